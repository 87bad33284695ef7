"""Safety layer on the 6-DoF arm: every check clamps, rejects or stops, and is counted."""
import threading

import mujoco
import numpy as np
import pytest

from vlajax.bridge import safety as safety_lib
from vlajax.bridge.kinematics import Kinematics
from vlajax.bridge.robots.mujoco_robot import ARM_XML
from vlajax.bridge.safety import SafetyConfig, SafetyLayer

DT = 0.02


@pytest.fixture(scope="module")
def kin():
  return Kinematics(mujoco.MjModel.from_xml_path(ARM_XML), "ee")


@pytest.fixture(scope="module")
def home():
  model = mujoco.MjModel.from_xml_path(ARM_XML)
  return model.key_qpos[model.key("home").id].copy()


def _layer(kin, home, **overrides):
  cfg = SafetyConfig(dt=DT, joint_lower=kin.lower, joint_upper=kin.upper, **overrides)
  return SafetyLayer(cfg, kin, initial_command=home)


def test_non_finite_command_is_rejected(kin, home):
  layer = _layer(kin, home)
  for bad in (np.full(6, np.nan), np.array([0, np.inf, 0, 0, 0, 0.0])):
    out = layer.filter(bad)
    np.testing.assert_allclose(out, home, atol=1e-6)
  assert layer.counts["non_finite"] == 2
  assert layer.log[-1].kind == "non_finite"


def test_joint_limits_clipped_with_margin(kin, home):
  layer = _layer(kin, home, joint_margin=np.deg2rad(2))
  cmd = kin.upper + 1.0
  cmd[0] = kin.lower[0] - 5.0
  out = layer.filter(cmd)
  margin = np.deg2rad(2)
  np.testing.assert_allclose(out[1:], kin.upper[1:] - margin, atol=1e-6)
  assert out[0] == pytest.approx(kin.lower[0] + margin, abs=1e-6)
  assert layer.counts["joint_limit"] == 1


def test_joint_velocity_limit(kin, home):
  vmax = np.deg2rad(150)
  layer = _layer(kin, home, max_joint_velocity=vmax)
  target = home + 1.0
  q = home
  for _ in range(10):
    out = layer.filter(target).astype(np.float64)
    assert np.max(np.abs(out - q)) <= vmax * DT + 1e-6
    q = out
  assert layer.counts["joint_velocity"] == 10
  # direction is kept: all joints moved by the same amount toward the target
  np.testing.assert_allclose(q - home, np.full(6, 10 * vmax * DT), atol=1e-5)


def test_joint_acceleration_limit(kin, home):
  amax = 10.0
  layer = _layer(kin, home, max_joint_acceleration=amax)
  q_prev, v_prev = home, np.zeros(6)
  for _ in range(5):
    out = layer.filter(home + 0.5).astype(np.float64)
    v = (out - q_prev) / DT
    assert np.max(np.abs(v - v_prev)) <= amax * DT + 1e-3
    q_prev, v_prev = out, v
  assert layer.counts["joint_acceleration"] >= 1


def test_workspace_projection(kin, home):
  pos, _ = kin.fk(home)
  lower, upper = pos - np.array([0.2, 0.2, 0.2]), pos + np.array([0.2, 0.2, 0.05])
  layer = _layer(kin, home, workspace_lower=lower, workspace_upper=upper)
  q = home.copy()
  q[1] -= 0.3  # leans back: EE leaves the box, moving up (z) and back (-x)
  assert not np.all(kin.fk(q)[0] <= upper)
  out = layer.filter(q)
  ee = kin.fk(out.astype(np.float64))[0]
  assert np.all(ee >= lower - 1e-3) and np.all(ee <= upper + 1e-3)
  assert ee[2] == pytest.approx(upper[2], abs=2e-3)  # projected onto the box face, not just held
  assert layer.counts["workspace"] == 1


def test_max_ee_step(kin, home):
  layer = _layer(kin, home, max_ee_step=0.01)
  start = kin.fk(home)[0]
  out = layer.filter(home + np.array([0.5, 0.3, -0.3, 0.2, 0, 0]))
  step = np.linalg.norm(kin.fk(out.astype(np.float64))[0] - start)
  assert step <= 0.01 + 1e-6 and step > 0.009
  assert layer.counts["ee_step"] == 1


def test_force_threshold_triggers_latched_compliant_stop(kin, home):
  layer = _layer(kin, home, max_force=30.0)
  measured = home + 0.01
  out = layer.filter(home + 0.05, measured_q=home, wrench=np.array([5.0, 0, 0, 0, 0, 0]))
  np.testing.assert_allclose(out, home + 0.05, atol=1e-6)
  out = layer.filter(home + 0.1, measured_q=measured, wrench=np.array([25.0, 25.0, 0, 0, 0, 0]))
  np.testing.assert_allclose(out, measured, atol=1e-6)  # holds where it is: stops pushing
  assert layer.stopped and "force" in layer.stop_reason
  out = layer.filter(home + 0.2, wrench=np.zeros(6))  # latched until reset
  np.testing.assert_allclose(out, measured, atol=1e-6)
  assert layer.counts["force_torque_stop"] == 1
  layer.reset(home)
  assert not layer.stopped


def test_self_collision_rejected(kin, home):
  layer = _layer(kin, home, self_collision=True)
  folded = home.copy()
  folded[2], folded[3] = 2.5, 2.4
  out = layer.filter(folded)
  np.testing.assert_allclose(out, home, atol=1e-6)
  assert layer.counts["self_collision"] == 1
  ok = layer.filter(home + 0.05)
  np.testing.assert_allclose(ok, home + 0.05, atol=1e-6)


def test_emergency_stop_from_another_thread_and_everywhere(kin, home):
  layer = _layer(kin, home)
  other = _layer(kin, home)
  thread = threading.Thread(target=layer.emergency_stop, args=("operator pressed e-stop",))
  thread.start()
  thread.join()
  assert layer.stopped and layer.stop_reason == "operator pressed e-stop"
  np.testing.assert_allclose(layer.filter(home + 0.3), home, atol=1e-6)
  assert safety_lib.emergency_stop_all("fire alarm") >= 2
  assert other.stopped and other.counts["emergency_stop"] == 1


def test_hold_and_intervention_log(kin, home):
  layer = _layer(kin, home)
  np.testing.assert_allclose(layer.hold("inference late"), home, atol=1e-6)
  layer.log_intervention("inference_timeout", "planner busy 1.2s")
  assert layer.counts["hold"] == 1 and layer.counts["inference_timeout"] == 1
  assert [e.kind for e in layer.log][-2:] == ["hold", "inference_timeout"]


def test_random_commands_never_leave_the_limits(kin, home):
  """Fuzz: whatever the policy sends, every forwarded command is finite and within all limits."""
  pos, _ = kin.fk(home)
  lower, upper = pos - 0.25, pos + 0.25
  vmax = 2.0
  layer = _layer(kin, home, max_joint_velocity=vmax, workspace_lower=lower, workspace_upper=upper,
                 max_ee_step=0.02, self_collision=True)
  pairs = kin.collision_pairs(3)
  rng = np.random.default_rng(0)
  prev = home
  margin = np.deg2rad(2)
  for i in range(150):
    cmd = prev + rng.normal(0, 0.3, 6) if i % 3 else rng.uniform(-6, 6, 6)
    if i % 17 == 0:
      cmd[rng.integers(6)] = np.nan
    out = layer.filter(cmd).astype(np.float64)
    assert np.all(np.isfinite(out))
    assert np.all(out >= kin.lower + margin - 1e-5) and np.all(out <= kin.upper - margin + 1e-5)
    assert np.max(np.abs(out - prev)) <= vmax * DT + 1e-5
    ee = kin.fk(out)[0]
    assert np.all(ee >= lower - 2e-3) and np.all(ee <= upper + 2e-3)
    assert np.linalg.norm(ee - kin.fk(prev)[0]) <= 0.02 + 1e-3
    assert kin.self_collision(out, pairs) == []
    prev = out
  assert sum(layer.counts.values()) > 0


def test_kinematic_checks_need_kinematics():
  with pytest.raises(ValueError, match="need a Kinematics"):
    SafetyLayer(SafetyConfig(workspace_lower=np.zeros(3), workspace_upper=np.ones(3)))
