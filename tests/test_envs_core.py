"""Env protocol, registry, wrappers (episode, vmap, fresh auto-reset, action repeat), brax interop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax import envs
from vlajax.envs import brax_adapter, wrappers


@pytest.fixture(scope="module")
def cartpole():
  return envs.make("cartpole")


# MJX compiles slowly on a CPU (~10-30 s per cart-pole reset or step program): the jitted
# functions below are built once per module and shared, and tests that can use the same batch size
# do (one compilation each).
BATCH = 64


@pytest.fixture(scope="module")
def batched(cartpole):
  env = wrappers.wrap_for_training(cartpole, episode_length=30)
  return env, jax.jit(env.reset), jax.jit(env.step)


@pytest.fixture(scope="module")
def pooled(cartpole):
  """Episodes of 7 steps, reset pool redrawn every 5 steps in `step`: (reset, step), jitted."""
  env = wrappers.wrap_for_training(cartpole, episode_length=7, reset_refresh=5)
  return jax.jit(env.reset), jax.jit(env.step)


@pytest.fixture(scope="module")
def repeats(cartpole):
  """{action_repeat: (reset, step)} for repeats 1 and 3 of 2 envs, jitted."""
  fns = {}
  for repeat in (1, 3):
    env = wrappers.VmapWrapper(wrappers.EpisodeWrapper(cartpole, 100, action_repeat=repeat))
    fns[repeat] = jax.jit(env.reset), jax.jit(env.step)
  return fns


def test_reset_step_shapes_and_dtypes(cartpole, batched):
  # One env's shapes and dtypes as traced (what jit returns), without compiling unbatched programs.
  state = jax.eval_shape(cartpole.reset, jax.random.PRNGKey(0))
  assert state.obs["state"].shape == (5,) and state.obs["state"].dtype == jnp.float32
  assert state.obs["privileged_state"].shape == (11,)
  assert state.reward.shape == () and state.reward.dtype == jnp.float32
  assert state.done.shape == () and state.done.dtype == jnp.float32
  nxt = jax.eval_shape(cartpole.step, state, jnp.ones((cartpole.action_size,)))
  same = jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), state, nxt)
  assert all(jax.tree.leaves(same))                  # step keeps the state's signature
  assert set(nxt.metrics) == {"reward/upright", "reward/centered", "reward/small_control",
                              "reward/small_velocity"}
  assert cartpole.observation_size == {"state": (5,), "privileged_state": (11,)}
  _, reset, step = batched
  pushed = step(reset(jax.random.split(jax.random.PRNGKey(0), BATCH)), jnp.ones((BATCH, 1)))
  assert np.all(np.asarray(pushed.data.qvel[:, 0]) > 0)  # positive force pushes the cart forward


def test_jit_vmap_64_envs(batched):
  env, reset, step = batched
  state = reset(jax.random.split(jax.random.PRNGKey(0), BATCH))
  assert state.obs["state"].shape == (BATCH, 5)
  actions = jax.random.uniform(jax.random.PRNGKey(1), (BATCH, 1), minval=-1, maxval=1)
  state = step(state, actions)
  assert state.reward.shape == (BATCH,) and state.done.shape == (BATCH,)
  assert bool(jnp.all(jnp.isfinite(state.obs["state"])))
  # Different initial states per env.
  assert len(np.unique(np.asarray(state.data.qpos[:, 1]))) == BATCH


def test_truncation_and_fresh_auto_reset(batched):
  env, reset, step = batched
  state = reset(jax.random.split(jax.random.PRNGKey(2), BATCH))
  first_qpos = np.asarray(state.data.qpos)
  zeros = jnp.zeros((BATCH, 1))
  seen_done = seen_trunc = False
  for t in range(30):
    prev_steps = np.asarray(state.info["steps"])
    state = step(state, zeros)
    done = np.asarray(state.done) > 0
    if done.any():
      seen_done = True
      trunc = np.asarray(state.info["truncation"]) > 0
      # Truncation only at the time limit; finished envs restart their step counter.
      assert np.all(prev_steps[trunc] + 1 == 30)
      seen_trunc |= trunc.any()
      assert np.all(np.asarray(state.info["steps"])[done] == 0)
      # The final observation is kept and differs from the new initial observation.
      final = np.asarray(state.info["final_obs"]["state"])[done]
      fresh = np.asarray(state.obs["state"])[done]
      assert not np.allclose(final, fresh)
  assert seen_done and seen_trunc
  # After the time limit every env restarted from a freshly drawn state, not the cached first one.
  new_qpos = np.asarray(state.data.qpos)
  assert np.all(np.abs(new_qpos - first_qpos).max(axis=1) > 1e-6)
  assert np.all(np.abs(new_qpos[:, 1]) <= 0.1 + 1e-6)  # within the reset distribution


def test_reset_pool_is_redrawn_every_k_steps(cartpole, pooled):
  """`reset_refresh=K`: finished envs start from the pool's fresh draw, redrawn every K steps."""
  reset, step = pooled
  state = reset(jax.random.split(jax.random.PRNGKey(4), 6))
  pool_qpos = lambda s: np.asarray(s.info["reset_pool"]["data"].qpos)
  pools, restarts = [pool_qpos(state)], 0
  assert not np.allclose(pools[0], np.asarray(state.data.qpos))   # the pool is a separate draw
  for _ in range(14):
    state = step(state, jnp.zeros((6, 1)))
    pools.append(pool_qpos(state))
    done = np.asarray(state.done) > 0
    restarts += done.sum()
    np.testing.assert_array_equal(np.asarray(state.data.qpos)[done], pools[-1][done])
    np.testing.assert_array_equal(np.asarray(state.obs["state"])[done],
                                  np.asarray(state.info["reset_pool"]["obs"]["state"])[done])
  assert restarts >= 12                            # every env hit the time limit at steps 7 and 14
  redrawn = [t for t in range(1, 15) if not np.array_equal(pools[t], pools[t - 1])]
  assert redrawn == [6, 11], redrawn               # before stepping, once 5 steps have passed
  with pytest.raises(ValueError, match="reset_refresh"):
    wrappers.wrap_for_training(cartpole, episode_length=7, reset_refresh=0)


def test_caller_refreshed_pool_matches_in_step_refresh(cartpole, pooled):
  """`refresh_by_caller`: `step` never redraws; `refresh_pool_if_due` before each K steps gives
  the same trajectory as the in-step redraw (so a learner's scan of K steps holds no cond)."""
  reset_a, step_a = pooled
  by_caller = wrappers.wrap_for_training(cartpole, episode_length=7, reset_refresh=5,
                                         refresh_by_caller=True)
  actions = 0.5 * jax.random.normal(jax.random.PRNGKey(8), (15, 6, 1))
  keys = jax.random.split(jax.random.PRNGKey(4), 6)
  a, b = reset_a(keys), jax.jit(by_caller.reset)(keys)
  step_b = jax.jit(by_caller.step)
  refresh = jax.jit(by_caller.refresh_pool_if_due)
  for t in range(15):
    if t % 5 == 0:
      b = refresh(b)
    a, b = step_a(a, actions[t]), step_b(b, actions[t])
    np.testing.assert_array_equal(np.asarray(a.data.qpos), np.asarray(b.data.qpos))
    np.testing.assert_array_equal(np.asarray(a.info["reset_pool"]["data"].qpos),
                                  np.asarray(b.info["reset_pool"]["data"].qpos))
  # Without the caller's refresh the pool is never redrawn, however old.
  stale = b
  for t in range(6):
    stale = step_b(stale, actions[t])
  assert int(stale.info["reset_pool_age"][0]) == 11
  np.testing.assert_array_equal(np.asarray(stale.info["reset_pool"]["data"].qpos),
                                np.asarray(b.info["reset_pool"]["data"].qpos))
  assert not np.array_equal(np.asarray(refresh(stale).info["reset_pool"]["data"].qpos),
                            np.asarray(b.info["reset_pool"]["data"].qpos))


def test_action_repeat_sums_rewards(repeats):
  (reset_once, step_once), (reset_thrice, step_thrice) = repeats[1], repeats[3]
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  action = jnp.full((2, 1), 0.5, jnp.float32)  # not weak-typed: the next test reuses the programs
  s1 = reset_once(keys)
  rewards = []
  for _ in range(3):
    s1 = step_once(s1, action)
    rewards.append(s1.reward)
  s3 = step_thrice(reset_thrice(keys), action)
  np.testing.assert_allclose(s3.data.qpos, s1.data.qpos, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(s3.reward, sum(rewards), rtol=1e-5)
  assert int(s3.info["steps"][0]) == 1


def test_action_repeat_stops_at_the_sub_step_that_ends_the_episode(cartpole, repeats):
  (reset_once, step_once), (_, step_thrice) = repeats[1], repeats[3]
  state = reset_once(jax.random.split(jax.random.PRNGKey(4), 2))
  # Env 0 starts past the fall angle (its first sub-step terminates), env 1 upright.
  tilted = state.data.qpos.at[0, 1].set(cartpole.config.fall_angle + 0.2)
  state = state.replace(data=state.data.replace(qpos=tilted))
  action = jnp.zeros((2, 1))
  s1 = step_once(state, action)
  s3 = step_thrice(state, action)
  assert float(s1.done[0]) == 1.0 and float(s1.done[1]) == 0.0
  np.testing.assert_allclose(s3.reward[0], s1.reward[0], rtol=1e-6)   # no reward after the end
  np.testing.assert_allclose(s3.data.qpos[0], s1.data.qpos[0], rtol=1e-6)
  assert float(s3.done[0]) == 1.0 and float(s3.done[1]) == 0.0
  assert float(s3.reward[1]) > 1.5 * float(s1.reward[1])            # three sub-steps summed


def test_registry_errors_name_the_problem():
  assert "cartpole" in envs.names() and "quadruped_joystick" in envs.names()
  with pytest.raises(KeyError, match="walker9"):
    envs.make("walker9")
  with pytest.raises(KeyError, match="episode_lenght"):
    envs.make("cartpole", episode_lenght=3)
  with pytest.raises(TypeError, match="swing_up"):
    envs.make("cartpole", swing_up="yes")
  assert envs.make("cartpole_swingup").config.swing_up


def test_from_brax_env_runs_in_our_learner():
  """A brax-shaped env (array observations, pipeline_state) trains under our PPO."""
  from brax import envs as brax_envs  # pylint: disable=import-outside-toplevel
  from vlajax.core import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from vlajax.rl import ppo  # pylint: disable=import-outside-toplevel
  env = brax_adapter.from_brax(brax_envs.get_environment("reacher", backend="mjx"))
  assert env.observation_size["state"] == env.observation_size["privileged_state"]
  cfg = ppo.default_config()
  cfg.update(dict(num_envs=8, unroll_length=4, num_minibatches=2, num_epochs=1, episode_length=20,
                  policy_hidden=(16,), value_hidden=(16,), num_iterations=2))
  learner = ppo.Learner(env, cfg, mesh_lib.make_mesh({"data": -1}, devices=jax.devices()[:1]))
  state = learner.init(jax.random.PRNGKey(0))
  for _ in range(2):
    state, metrics = learner.iteration(state)
  assert np.isfinite(float(metrics["loss/total"]))
  assert int(state.iteration) == 2
