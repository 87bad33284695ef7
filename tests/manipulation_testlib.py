"""Shared by the per-task arm rollout tests (one file per task, so that pytest-xdist's
`--dist loadfile` compiles the three rollouts on different workers).

One jitted rollout per task: reset, then `episode_length` steps of the scripted expert, vmapped
over `NUM_STATES` seeded initial states; MJX compiles each in ~1.5 min on 2 CPU cores.
"""
import jax
import jax.numpy as jnp
import numpy as np

from vlajax import envs
from vlajax.envs import wrappers
from vlajax.envs.manipulation import experts

NUM_STATES = 16
SEED = 123
# Successes of the scripted experts over the NUM_STATES initial states of SEED (measured; a
# change that lowers one is a regression of the task or the expert). Re-measured 2026-12-02 on
# the merged DR code (fresh venv, deterministic over two runs): pick 13 (was pinned at 15 before the
# generic arm DR merge), language 13 (was 14). Pick's failures: two cubes slip out during the
# carry (weak-gripper DR draws), one carry does not reach a far goal (x = 0.67 m) in 300 steps.
# 2026-12-02 (later): the pick plan turns to the cube's faces before descending, keeps a cube
# in the air in its grip, steers the cube (not the tool point) over the goal, and pick carries at
# 0.2 (language keeps 0.4): pick 14, language 16.
# 2026-12-03, a fresh checkout on another machine, no env or expert change since: language 15/16
# (state 8 fails), alone and in the suite; MJX's contact outcomes over 300 steps move with the
# CPU's float rounding, so the pin is 15 (CI passed with 16 on 12-02's machine).
EXPECTED_SUCCESSES = {"arm_reach": 16, "arm_push_cube": 15, "arm_pick_cube": 14,
                      "tabletop_language": 15}


def rollout(name, action_space="ee_delta"):
  env = envs.make(name, action_space=action_space)
  batched = wrappers.VmapWrapper(wrappers.EpisodeWrapper(env, env.config.episode_length))
  expert = jax.vmap(experts.make_expert(env))

  @jax.jit
  def run(keys):
    def body(state, _):
      action = expert(state)
      state = batched.step(state, action)
      return state, (state.metrics["success"], state.metrics["episode_success"], state.reward,
                     jnp.all(jnp.isfinite(state.obs["state"]), axis=-1), action)
    first = batched.reset(keys)
    last, trace = jax.lax.scan(body, first, None, length=env.config.episode_length)
    return first, last, trace

  first, last, trace = run(jax.random.split(jax.random.PRNGKey(SEED), NUM_STATES))
  return env, first, last, jax.tree.map(np.asarray, trace)


def check_rollout(name, env, first, last, trace):
  """Shapes, finite values, different initial states, the per-episode latch, and the expert's
  success count on the fixed states."""
  success, latched, reward, finite, action = trace
  steps = env.config.episode_length
  assert first.obs["state"].shape == (NUM_STATES,) + env.observation_size["state"]
  assert action.shape == (steps, NUM_STATES, 7) and np.all(np.abs(action) <= 1.0)
  assert finite.all() and np.isfinite(reward).all()
  # Different initial states per env (arm pose, target or goal, cube: drawn per episode).
  assert len(np.unique(np.asarray(first.data.qpos)[:, 0])) == NUM_STATES
  assert len(np.unique(np.asarray(first.info["target"]), axis=0)) == NUM_STATES
  # Latched: the episode flag is the running maximum of the per-step success.
  np.testing.assert_array_equal(latched, np.maximum.accumulate(success, axis=0))
  assert int(latched[-1].sum()) >= EXPECTED_SUCCESSES[name], (name, latched[-1])
  assert np.all(np.asarray(last.info["steps"]) == steps)
