"""FK / Jacobian / damped-least-squares IK on the project's 6-DoF arm MJCF."""
import mujoco
import numpy as np
import pytest

from vlajax.bridge.kinematics import Kinematics, orientation_error, rotvec_to_matrix
from vlajax.bridge.robots.mujoco_robot import ARM_XML


@pytest.fixture(scope="module")
def arm():
  model = mujoco.MjModel.from_xml_path(ARM_XML)
  return model, Kinematics(model, "ee")


def _home(model):
  return model.key_qpos[model.key("home").id].copy()


def test_fk_matches_mujoco_forward(arm):
  model, kin = arm
  data = mujoco.MjData(model)
  rng = np.random.default_rng(0)
  for _ in range(5):
    q = rng.uniform(kin.lower, kin.upper)
    data.qpos[:] = q
    mujoco.mj_forward(model, data)
    pos, rot = kin.fk(q)
    np.testing.assert_allclose(pos, data.site("ee").xpos, atol=1e-12)
    np.testing.assert_allclose(rot, data.site("ee").xmat.reshape(3, 3), atol=1e-12)


def test_jacobian_matches_finite_differences(arm):
  model, kin = arm
  q = _home(model) + 0.1
  jac = kin.jacobian(q)
  eps = 1e-6
  pos0, rot0 = kin.fk(q)
  for j in range(kin.n):
    dq = np.zeros(kin.n)
    dq[j] = eps
    pos1, rot1 = kin.fk(q + dq)
    np.testing.assert_allclose((pos1 - pos0) / eps, jac[:3, j], atol=1e-5)
    np.testing.assert_allclose(orientation_error(rot1, rot0) / eps, jac[3:, j], atol=1e-5)


def test_dls_ik_reaches_position_targets(arm):
  model, kin = arm
  rng = np.random.default_rng(1)
  home = _home(model)
  for _ in range(15):
    target, _ = kin.fk(rng.uniform(0.8 * kin.lower, 0.8 * kin.upper))  # reachable by construction
    q, converged = kin.solve_ik(home, target, tol=1e-4)
    assert converged, target
    assert np.linalg.norm(kin.fk(q)[0] - target) < 1e-4
    assert np.all(q >= kin.lower) and np.all(q <= kin.upper)


def test_dls_ik_reaches_full_pose_targets(arm):
  model, kin = arm
  rng = np.random.default_rng(2)
  home = _home(model)
  for _ in range(10):
    target_pos, target_rot = kin.fk(home + rng.uniform(-0.5, 0.5, kin.n))
    q, converged = kin.solve_ik(home, target_pos, target_rot, tol=1e-4, rot_tol=1e-3)
    assert converged
    pos, rot = kin.fk(q)
    assert np.linalg.norm(pos - target_pos) < 1e-4
    assert np.linalg.norm(orientation_error(target_rot, rot)) < 1e-3


def test_ee_delta_action_becomes_joint_target(arm):
  model, kin = arm
  q = _home(model)
  pos, rot = kin.fk(q)
  delta = np.array([0.02, -0.01, 0.015, 0.0, 0.05, -0.03])
  q_new = kin.ee_delta_to_joint_target(q, delta)
  new_pos, new_rot = kin.fk(q_new)
  np.testing.assert_allclose(new_pos, pos + delta[:3], atol=1e-4)
  np.testing.assert_allclose(new_rot, rotvec_to_matrix(delta[3:]) @ rot, atol=1e-3)
  with pytest.raises(ValueError, match="shape"):
    kin.ee_delta_to_joint_target(q, np.zeros(4))


def test_link_sphere_self_collision(arm):
  model, kin = arm
  pairs = kin.collision_pairs(min_body_gap=3)
  assert len(pairs) > 0
  assert kin.self_collision(_home(model), pairs) == []
  folded = _home(model)
  folded[2], folded[3] = 2.6, 2.5  # forearm folded back onto the upper arm
  assert kin.self_collision(folded, pairs)
