"""Native-MuJoCo sim robot: real-time stepping, own physics, stop/hold, quadruped observation twin."""
import time

import mujoco
import numpy as np
import pytest

from vlajax.bridge.robots import PhysicsOverrides, make_arm6_robot, make_quadruped_robot


def test_arm_runs_in_real_time_and_tracks_targets():
  robot = make_arm6_robot()
  try:
    obs = robot.reset()
    target = obs["joint_pos"] + np.array([0.2, 0.15, -0.2, 0.1, 0.2, 0.2], np.float32)
    start = time.perf_counter()
    while time.perf_counter() - start < 1.2:
      robot.send_action(target)
      time.sleep(0.02)
    rtf = robot.real_time_factor()
    assert 0.8 < rtf < 1.1, rtf  # paced to the wall clock (generous for a loaded machine)
    obs = robot.get_observation()
    assert set(obs) == {"joint_pos", "joint_vel", "ee_pos", "wrench"}
    assert np.max(np.abs(obs["joint_pos"] - target)) < 0.06
    assert robot.wrench() is not None and robot.wrench().shape == (6,)
  finally:
    robot.close()


def test_physics_overrides_change_the_model():
  over = PhysicsOverrides(friction_scale=0.5, mass_scale=1.3, damping_scale=2.0, kp_scale=0.6,
                          kv_scale=1.5, motor_strength_scale=0.8, gravity=(0, 0, -9.0))
  robot = make_arm6_robot(overrides=over, real_time=False)
  nom, m = robot.nominal_model, robot.model
  np.testing.assert_allclose(m.geom_friction[:, 0], 0.5 * nom.geom_friction[:, 0])
  np.testing.assert_allclose(m.body_mass, 1.3 * nom.body_mass)
  np.testing.assert_allclose(m.dof_damping, 2.0 * nom.dof_damping)
  np.testing.assert_allclose(m.actuator_gainprm[:, 0], 0.6 * nom.actuator_gainprm[:, 0])
  np.testing.assert_allclose(m.actuator_biasprm[:, 1], 0.6 * nom.actuator_biasprm[:, 1])
  np.testing.assert_allclose(m.actuator_biasprm[:, 2], 1.5 * nom.actuator_biasprm[:, 2])
  np.testing.assert_allclose(m.actuator_forcerange, 0.8 * nom.actuator_forcerange)
  np.testing.assert_allclose(m.opt.gravity, [0, 0, -9.0])


def test_action_delay_and_stop():
  robot = make_arm6_robot(overrides=PhysicsOverrides(action_delay_s=0.1), real_time=False)
  home = robot.joint_positions()
  target = (home + 0.3).astype(np.float32)
  robot.send_action(target)
  robot.step_physics(25)  # 50 ms: not applied yet
  np.testing.assert_allclose(robot.data.ctrl, home)
  robot.step_physics(30)  # 110 ms
  np.testing.assert_allclose(robot.data.ctrl, target, atol=1e-6)
  robot.step_physics(100)
  robot.stop()
  held = robot.joint_positions()
  np.testing.assert_allclose(robot.data.ctrl, held)
  robot.send_action(np.zeros(6, np.float32))  # ignored while stopped
  np.testing.assert_allclose(robot.data.ctrl, held)
  robot.reset()
  assert not robot.stopped
  with pytest.raises(ValueError, match="shape"):
    robot.send_action(np.zeros(5))
  with pytest.raises(ValueError, match="non-finite"):
    robot.send_action(np.full(6, np.nan))


def test_quadruped_observation_matches_the_mjx_env():
  """The sim robot assembles obs["state"] exactly as the MJX env does, from the same physics state.

  The env's observation function is called eagerly on `mjx.put_data` of the robot's state (a jitted
  reset/step would cost ~30 s of compile on the test machine).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from mujoco import mjx  # pylint: disable=import-outside-toplevel
  from vlajax.envs.locomotion import randomization as dr_lib  # pylint: disable=import-outside-toplevel
  from vlajax.envs import registry  # pylint: disable=import-outside-toplevel

  env = registry.make("quadruped_joystick", **{"noise_config.level": 0.0, "randomization.enabled": False})
  robot = make_quadruped_robot(env, real_time=False)
  assert robot.model.opt.timestep == pytest.approx(env.config.sim_dt)
  assert robot.control_hz == pytest.approx(50.0)
  rng = np.random.default_rng(0)
  data = robot.data
  data.qpos[7:] += rng.uniform(-0.3, 0.3, 12)
  data.qvel[:] = rng.normal(size=robot.model.nv)
  quat = rng.normal(size=4)
  data.qpos[3:7] = quat / np.linalg.norm(quat)
  mujoco.mj_forward(robot.model, data)
  last_action, command = rng.uniform(-1, 1, 12), np.array([0.5, -0.2, 0.3])
  robot.set_info("last_action", last_action)
  robot.set_info("command", command)

  mjx_data = mjx.put_data(robot.model, data)
  info = {"last_action": jnp.asarray(last_action), "command": jnp.asarray(command),
          "dr": dr_lib.nominal_draws(env.targets), "feet_air_time": jnp.zeros(4)}
  env_obs = env._observe(mjx_data, info, env._foot_contact(mjx_data), jax.random.PRNGKey(0))  # pylint: disable=protected-access
  np.testing.assert_allclose(robot.get_observation()["state"], np.asarray(env_obs["state"]), atol=1e-5)
  # the action adapter is the env's: PD targets default_pose + clip(a) * action_scale
  robot.send_action(np.full(12, 2.0, np.float32))
  default = robot.model.key_qpos[robot.model.key("home").id, 7:]
  np.testing.assert_allclose(robot.data.ctrl, default + env.config.action_scale, atol=1e-6)
  np.testing.assert_allclose(robot.model.actuator_gainprm[:, 0], env.config.Kp)
