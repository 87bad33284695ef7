"""Tabletop arm tasks: success predicates on constructed states, action spaces and bad input.

The closed-loop rollouts of each task with its scripted expert are in
test_envs_manipulation_{reach,push,pick}.py (one file each, so they compile on different workers).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax import envs
from vlajax.envs.manipulation import arm, experts


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
