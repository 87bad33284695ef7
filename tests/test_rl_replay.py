"""On-device replay: circular insert, uniform sampling of stored rows only, episode-bounded windows,
local (per-device) insert/sample under a sharded env axis."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax.core import mesh as mesh_lib
from vlajax.rl import replay as replay_lib

NUM_ENVS = 4


def _fill(buffer, values, dones=None):
  """Inserts one row per value: column j of row t holds 100·t + j (and its step index)."""
  insert = jax.jit(replay_lib.insert)
  for i, t in enumerate(values):
    row = {"x": jnp.asarray(100.0 * t + np.arange(NUM_ENVS)), "t": jnp.full((NUM_ENVS,), t)}
    done = jnp.zeros((NUM_ENVS,)) if dones is None else jnp.asarray(dones[i], jnp.float32)
    buffer = insert(buffer, row, done)
  return buffer


def _empty(rows):
  return replay_lib.init({"x": jnp.zeros(()), "t": jnp.zeros((), jnp.int32)}, rows * NUM_ENVS,
                         NUM_ENVS)


def test_capacity_wrap_overwrites_oldest_rows():
  buffer = _fill(_empty(5), range(8))
  assert int(buffer.size) == 5 and int(buffer.cursor) == 3
  assert int(buffer.num_transitions) == 5 * NUM_ENVS
  # rows 0..2 were overwritten by steps 5..7; rows 3, 4 still hold steps 3, 4.
  np.testing.assert_array_equal(np.asarray(buffer.data["t"][:, 0]), [5, 6, 7, 3, 4])
  np.testing.assert_array_equal(np.asarray(buffer.data["x"][1]), 600.0 + np.arange(NUM_ENVS))
  with pytest.raises(ValueError, match="capacity"):
    replay_lib.init({"x": jnp.zeros(())}, 10, NUM_ENVS)


def test_sampling_only_returns_stored_rows_uniformly():
  buffer = _fill(_empty(64), range(3))   # only 3 of 64 rows written
  batch = jax.jit(replay_lib.sample, static_argnums=2)(buffer, jax.random.PRNGKey(0), 3000)
  t = np.asarray(batch["t"])
  assert t.shape == (3000, NUM_ENVS)
  assert set(np.unique(t)) == {0, 1, 2}                      # never an unwritten (zero-filled) row
  counts = np.bincount(t.ravel(), minlength=3) / t.size
  np.testing.assert_allclose(counts, 1 / 3, atol=0.03)      # uniform over what is stored
  # Each sample comes from its own column (x = 100 t + column).
  np.testing.assert_array_equal(np.asarray(batch["x"]), 100.0 * t + np.arange(NUM_ENVS))
  # After wrapping, samples cover exactly the live steps.
  wrapped = _fill(_empty(6), range(10))
  t = np.asarray(replay_lib.sample(wrapped, jax.random.PRNGKey(1), 2000)["t"])
  assert set(np.unique(t)) == set(range(4, 10))


def test_windows_never_cross_episode_ends_or_the_cursor():
  horizon, steps = 3, 40
  rng = np.random.default_rng(0)
  dones = (rng.random((steps, NUM_ENVS)) < 0.25).astype(np.float32)   # short random episodes
  buffer = _fill(_empty(25), range(steps), dones)                      # wrapped: steps 15..39 live
  episode = np.cumsum(np.concatenate([np.zeros((1, NUM_ENVS)), dones[:-1]]), axis=0)  # id per step
  sample = jax.jit(replay_lib.sample_windows, static_argnums=(2, 3))
  data, valid = sample(buffer, jax.random.PRNGKey(2), 500, horizon)
  t, valid = np.asarray(data["t"]), np.asarray(valid)
  assert t.shape == (horizon, 500, NUM_ENVS)
  assert valid.mean() > 0.9
  starts = t[0][valid]
  assert starts.min() >= 15 and starts.max() <= steps - horizon       # live and behind the cursor
  cols = np.broadcast_to(np.arange(NUM_ENVS), valid.shape)
  for k in range(horizon):
    np.testing.assert_array_equal(t[k][valid], t[0][valid] + k)       # consecutive steps
    same = episode[t[k], cols] == episode[t[0], cols]
    assert np.all(same[valid]), "a window crossed an episode end"
  # Every valid start of a one-episode window is reachable (no start is systematically skipped).
  possible = {(s, j) for j in range(NUM_ENVS) for s in range(15, steps - horizon + 1)
              if episode[s, j] == episode[s + horizon - 1, j]}
  data, valid = sample(buffer, jax.random.PRNGKey(3), 4000, horizon)
  starts, valid = np.asarray(data["t"][0]), np.asarray(valid)
  cols = np.broadcast_to(np.arange(NUM_ENVS), starts.shape)
  assert {(int(s), int(j)) for s, j in zip(starts[valid], cols[valid])} == possible


def test_insert_and_sample_stay_on_their_shard():
  mesh = mesh_lib.make_mesh({"data": 4}, devices=jax.devices()[:4])
  empty = _empty(16)
  shardings = replay_lib.sharding(empty, mesh)
  buffer = jax.device_put(empty, shardings)
  row = {"x": jnp.arange(NUM_ENVS, dtype=jnp.float32), "t": jnp.zeros((NUM_ENVS,), jnp.int32)}
  row_sharding = mesh_lib.sharding(mesh, "data")
  insert = jax.jit(replay_lib.insert, in_shardings=(shardings, row_sharding, row_sharding),
                   out_shardings=shardings)
  hlo = insert.lower(buffer, row, jnp.zeros((NUM_ENVS,))).compile().as_text()
  for collective in ("all-gather", "all-to-all", "collective-permute", "all-reduce"):
    assert collective not in hlo, f"insert communicates across devices ({collective})"
  sample = jax.jit(lambda b, k: replay_lib.sample(b, k, 8), in_shardings=(shardings, None))
  hlo = sample.lower(buffer, jax.random.PRNGKey(0)).compile().as_text()
  assert "all-gather" not in hlo and "all-to-all" not in hlo, "sampling gathers the whole buffer"
  out = sample(jax.device_put(insert(buffer, row, jnp.zeros((NUM_ENVS,))), shardings),
               jax.random.PRNGKey(0))
  assert len(out["x"].sharding.device_set) == 4
  np.testing.assert_array_equal(np.asarray(out["x"]), np.broadcast_to(np.arange(4.0), (8, 4)))
