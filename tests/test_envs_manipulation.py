"""Tabletop arm tasks: jit + vmap rollouts with finite values, success predicates on constructed
states, success latched per episode, the scripted experts' success rates over fixed seeds, and
bad input.

One jitted rollout per task (reset, then `episode_length` steps of the scripted expert, vmapped
over `NUM_STATES` seeded initial states) is shared by the tests of that task: MJX compiles each in
~1.5 min on 2 CPU cores.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax import envs
from vlajax.envs import wrappers
from vlajax.envs.manipulation import arm, experts

NUM_STATES = 16
SEED = 123
# Successes of the scripted experts over the NUM_STATES initial states of SEED (measured; a
# change that lowers one is a regression of the task or the expert).
EXPECTED_SUCCESSES = {"arm_reach": 16, "arm_push_cube": 15, "arm_pick_cube": 15}


def _rollout(name, action_space="ee_delta"):
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


@pytest.fixture(scope="module", params=sorted(EXPECTED_SUCCESSES))
def rollout(request):
  return (request.param,) + _rollout(request.param)


def test_rollout_shapes_finite_values_and_expert_success(rollout):
  name, env, first, last, (success, latched, reward, finite, action) = rollout
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


def _resting_cube_data(env, cube_xy, cube_z=arm.CUBE_HALF, opening=arm.FINGER_OPEN):
  """An un-stepped `mjx.Data` with the cube at (`cube_xy`, `cube_z`) and the fingers apart by
  `2 * opening`: the predicates only read positions."""
  data = env.make_data()
  qpos = data.qpos.at[env._cube_qpos:env._cube_qpos + 3].set(  # pylint: disable=protected-access
      jnp.array([cube_xy[0], cube_xy[1], cube_z]))
  qpos = qpos.at[env._finger_qpos].set(opening)  # pylint: disable=protected-access
  return data.replace(qpos=qpos)


def test_cube_predicates_on_constructed_states():
  push, pick = envs.make("arm_push_cube"), envs.make("arm_pick_cube")
  info = {"target": jnp.array([0.5, 0.1, 0.0]), "lifted": jnp.asarray(True)}
  inside = _resting_cube_data(push, (0.52, 0.09))
  outside = _resting_cube_data(push, (0.5, 0.17))
  raised = _resting_cube_data(push, (0.5, 0.1), cube_z=0.08)
  assert bool(push.success(inside, info)) and not bool(push.success(outside, info))
  assert not bool(push.success(raised, info))            # in the air above the goal: not placed
  # Picking also needs the lift (latched in info) and the release.
  assert bool(pick.success(inside, info))
  assert not bool(pick.success(inside, dict(info, lifted=jnp.asarray(False))))   # pushed there
  held = _resting_cube_data(pick, (0.52, 0.09), opening=arm.CUBE_HALF)
  assert not bool(pick.success(held, info))               # still in the closed gripper
  lifted = pick.update_task_info(raised, {"lifted": jnp.asarray(False)})
  assert bool(lifted["lifted"])
  assert bool(pick.update_task_info(inside, lifted)["lifted"])   # stays latched once set


def test_reach_predicate_and_action_spaces():
  reach = envs.make("arm_reach")
  data = reach.make_data()
  assert reach.action_size == 8 and envs.make("arm_reach", action_space="ee_delta").action_size == 7
  # At qpos0 (all joints 0) the tool point is straight up; a target 2 cm off counts, 5 cm not.
  data = jax.jit(lambda d: _forward(reach, d))(data)
  grip = np.asarray(reach.grip_pos(data))
  for offset, expected in ((0.02, True), (0.05, False)):
    info = {"target": jnp.asarray(grip + np.array([offset, 0.0, 0.0]))}
    assert bool(reach.success(data, info)) == expected


def _forward(env, data):
  from mujoco import mjx  # pylint: disable=import-outside-toplevel
  return mjx.kinematics(env.mjx_model, data)


def test_bad_input_names_the_problem():
  with pytest.raises(KeyError, match="arm_stack"):
    envs.make("arm_stack")
  with pytest.raises(ValueError, match="action_space 'cartesian'"):
    envs.make("arm_reach", action_space="cartesian")
  env = envs.make("arm_push_cube", action_space="ee_delta")
  with pytest.raises(ValueError, match=r"shape \(8,\).*f32\[7\]"):
    env.apply_action(env.make_data(), jnp.zeros(9), jnp.zeros(8))
  with pytest.raises(ValueError, match="no scripted expert"):
    experts.make_expert(envs.make("cartpole"))
