"""Closed-loop evaluation: fixed seeded initial states, per-episode outcomes (success, return,
length, time to success), chunked execution, and RL evaluation on the same rollout. The whole
evaluation job on an arm task (it renders videos) is in test_eval_video.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax import envs
from vlajax.envs import rollout as rollout_lib
from vlajax.eval import closed_loop
from vlajax.policies import chunking
from vlajax.rl import evaluation


def test_initial_keys_fix_the_initial_states():
  env = envs.make("cartpole")
  reset = jax.jit(jax.vmap(env.reset))
  first = reset(closed_loop.initial_keys(3, 8)).obs["state"]
  again = reset(closed_loop.initial_keys(3, 8)).obs["state"]
  other = reset(closed_loop.initial_keys(4, 8)).obs["state"]
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  with pytest.raises(ValueError, match="num_episodes must be >= 1"):
    closed_loop.initial_keys(0, 0)


def test_rl_evaluation_is_the_mean_of_the_rollout_episodes():
  env = envs.make("cartpole")
  batched = rollout_lib.make_batched_env(env, 40)
  act = rollout_lib.stateless(lambda obs: jnp.full(obs["state"].shape[:1] + (1,), 0.7))
  rng = jax.random.PRNGKey(5)
  means = jax.jit(lambda r: evaluation.evaluate(batched, act, (), r, 6, 40))(rng)
  k_reset, k_act = jax.random.split(rng)
  episodes = jax.jit(lambda: rollout_lib.rollout(batched, act, (), jax.random.split(k_reset, 6),
                                                 40, k_act))()
  # A constant push topples some poles before 40 steps: lengths differ and are counted to `done`.
  assert len(set(np.asarray(episodes.length).tolist())) > 1 and episodes.length.max() <= 40
  np.testing.assert_allclose(means["eval/episode_return"], episodes.episode_return.mean(), rtol=1e-6)
  np.testing.assert_allclose(means["eval/episode_length"], episodes.length.mean(), rtol=1e-6)
  assert not episodes.success.any() and np.all(episodes.time_to_success == -1)  # no success signal


def _counting_chunks(obs, rng):
  """f32[B, H=4, 1]: entry h of the chunk computed at step t is 100 t + h."""
  del rng
  t = obs["t"]
  return (100.0 * t[:, None] + jnp.arange(4.0)[None, :])[..., None]


def _run(act, carry, steps=7):
  actions = []
  for t in range(steps):
    action, carry = act(carry, {"t": jnp.full((2,), float(t))}, jax.random.PRNGKey(t))
    actions.append(np.asarray(action)[:, 0])
  return np.stack(actions)


def test_replan_every_k_executes_k_of_each_chunk():
  act, init = chunking.replan_every_k(_counting_chunks, horizon=4, execute=3)
  actions = _run(jax.jit(act), init(2, 1))
  np.testing.assert_array_equal(actions[:, 0], [0, 1, 2, 300, 301, 302, 600])
  with pytest.raises(ValueError, match="execute \\(5\\) must be in 1..horizon \\(4\\)"):
    chunking.replan_every_k(_counting_chunks, horizon=4, execute=5)
  wrong, init = chunking.replan_every_k(_counting_chunks, horizon=3, execute=3)
  with pytest.raises(ValueError, match="chunk policy returned shape \\(2, 4, 1\\)"):
    _run(wrong, init(2, 1), steps=1)


def test_temporal_ensemble_averages_the_predictions_for_now():
  act, init = chunking.temporal_ensemble(_counting_chunks, horizon=4, alpha=0.0)
  actions = _run(jax.jit(act), init(2, 1))
  # With alpha 0 the action at step t is the plain mean over the chunks of steps t-3..t of their
  # entry for t: at t the chunk of step s predicts 100 s + (t - s).
  expected = [np.mean([100 * s + (t - s) for s in range(max(0, t - 3), t + 1)]) for t in range(7)]
  np.testing.assert_allclose(actions[:, 0], expected, rtol=1e-6)
