"""The native-MuJoCo twin of the arm tasks (`bridge.robots.make_arm_robot(env)`): it starts in an
env state, reads the env's observation, maps the env's actions and scores the env's success
predicate, with MuJoCo's C physics in place of MJX. A trained PPO policy on it: the slow test in
test_rl_ppo_manipulation.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax import envs
from vlajax.bridge.robots import make_arm_robot

SUBSTEPS = 4   # ctrl_dt 0.02 / sim_dt 0.005


def _run_both(env, robot, state, actions):
  """Steps the MJX env and the robot with the same actions; returns both observations per step."""
  step = jax.jit(env.step)
  ours, theirs = [], []
  for action in actions:
    state = step(state, action)
    robot.send_action(action)
    robot.step_physics(SUBSTEPS)
    ours.append(np.asarray(state.obs["state"]))
    theirs.append(robot.get_observation()["state"])
  return np.stack(ours), np.stack(theirs), state


def test_twin_starts_in_the_env_state_and_follows_joint_delta_actions():
  env = envs.make("arm_reach", **{"randomization.enabled": False})
  robot = make_arm_robot(env, real_time=False)
  state = jax.jit(env.reset)(jax.random.PRNGKey(3))
  obs = robot.set_task(state)
  assert robot.observation_spec["state"].shape == state.obs["state"].shape == obs["state"].shape
  np.testing.assert_allclose(obs["state"], state.obs["state"], atol=1e-5)
  np.testing.assert_array_equal(robot.task_info()["target"], state.info["target"])
  # A smooth command: every joint target moves at 40% of its rate for 15 steps, then holds.
  actions = [np.full(8, 0.4, np.float32)] * 15 + [np.zeros(8, np.float32)] * 10
  ours, theirs, _ = _run_both(env, robot, state, actions)
  moved = np.abs(ours[-1, :7] - ours[0, :7])
  assert moved.min() > 0.1   # the arm did move (0.24 rad of target per joint)
  # Joint angles (rad): the shoulder and elbow agree to 1e-4 (measured); the light wrist joints
  # (5-7) are where float32 MJX and MuJoCo's float64 C solver part most (measured up to 0.046).
  np.testing.assert_allclose(theirs[:, :4], ours[:, :4], atol=1e-3)
  np.testing.assert_allclose(theirs[:, 4:7], ours[:, 4:7], atol=0.08)
  np.testing.assert_allclose(theirs[:, 15:18], ours[:, 15:18], atol=5e-3)  # tool point, m (2.5 mm)
  np.testing.assert_allclose(theirs[:, 18:26], ours[:, 18:26], atol=1e-6)  # last action
  np.testing.assert_allclose(theirs[:, 26:], ours[:, 26:], atol=5e-3)     # target, target - tool


def test_twin_moves_the_tool_through_the_envs_ik_and_scores_success():
  env = envs.make("arm_reach", action_space="ee_delta", **{"randomization.enabled": False})
  robot = make_arm_robot(env, real_time=False)
  state = jax.jit(env.reset)(jax.random.PRNGKey(5))
  robot.set_task(state)
  start = robot.get_observation()["state"][15:18]
  actions = [np.array([0.5, 0.0, -0.5, 0, 0, 0, 1], np.float32)] * 15
  ours, theirs, _ = _run_both(env, robot, state, actions)
  travelled = theirs[-1, 15:18] - start
  # 15 x 5 mm commanded per axis; the servos lag the IK's targets (~47 mm in 0.3 s, measured).
  assert travelled[0] > 0.03 and travelled[2] < -0.03 and abs(travelled[1]) < 0.005, travelled
  np.testing.assert_allclose(theirs[:, 15:18], ours[:, 15:18], atol=5e-3)   # 1 mm measured

  # The success predicate is the env's (tool point within 3 cm of the target); `set_task` also
  # puts the arm back in the episode's start state.
  robot.set_task(state.replace(info={**state.info, "target": start + np.float32([0, 0, 0.01])}))
  assert robot.success()
  robot.set_task(state.replace(info={**state.info, "target": start + np.float32([0.1, 0, 0])}))
  assert not robot.success()


def test_twin_bad_input_is_named():
  with pytest.raises(ValueError, match="Cartpole.*is not an arm task"):
    make_arm_robot(envs.make("cartpole"), real_time=False)
  robot = make_arm_robot(envs.make("arm_reach"), real_time=False)
  with pytest.raises(ValueError, match="action has shape \\(7,\\), expected \\(8,\\)"):
    robot.send_action(np.zeros(7, np.float32))


@pytest.mark.parametrize("name", ["arm_push_cube", "arm_pick_cube", "tabletop_language"])
def test_every_tasks_functions_read_only_the_fields_the_twin_passes(name):
  env = envs.make(name, action_space="ee_delta")
  robot = make_arm_robot(env, real_time=False)
  robot.send_action(np.full(env.action_size, 0.3, np.float32))
  robot.step_physics(20)   # off the home pose, the arm and the objects moving
  task = jax.tree.map(jnp.asarray, {**robot.task_info(), "target": np.float32([0.5, 0.1, 0.2])})
  light, full = robot.mjx_data(), robot.mjx_data(full=True)
  for fn in (env.proprioception, lambda d: env.task_obs(d, task),
             lambda d: env.success(d, task), lambda d: env.update_task_info(d, dict(task)),
             lambda d: env.apply_action(d, jnp.full(9, 0.1), jnp.full(7, 0.5))):
    ours, theirs = jax.jit(fn)(light), jax.jit(fn)(full)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), ours, theirs)
