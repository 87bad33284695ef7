"""A native-MuJoCo (CPU) robot that stands in for hardware.

The physics runs in its own thread at the model's timestep, paced to the wall clock (real time), so
the executor, the safety layer and the policy server meet the same timing problems as on a real
robot. The robot is generic over an MJCF plus two functions:

* ``observation_builder(model, data, info) -> dict`` builds the observation (``info`` holds
  ``last_action`` and whatever `set_info` stored, e.g. a joystick ``command``);
* ``action_adapter(model, data, action) -> ctrl float[nu]`` turns a policy action into actuator
  controls (default: the action is the control, clipped to ``ctrlrange``).

`PhysicsOverrides` gives the robot its own physics (friction, mass, damping, gains, gravity, motor
strength, actuation delay, observation noise), so that it can differ from the training simulator.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Mapping

import mujoco
import numpy as np

from vlajax.bridge.protocol import ArraySpec
from vlajax.bridge.robots.base import Robot

log = logging.getLogger(__name__)

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "envs", "assets")
ARM_XML = os.path.join(ASSETS, "arm_6dof.xml")

ObservationBuilder = Callable[[mujoco.MjModel, mujoco.MjData, dict], dict]
ActionAdapter = Callable[[mujoco.MjModel, mujoco.MjData, np.ndarray], np.ndarray]


@dataclasses.dataclass
class PhysicsOverrides:
  """Physics of the stand-in robot relative to its MJCF (1.0 = unchanged)."""

  friction_scale: float = 1.0        # sliding friction of every geom
  mass_scale: float = 1.0            # mass and inertia of every body
  damping_scale: float = 1.0         # joint damping
  kp_scale: float = 1.0              # position-actuator stiffness
  kv_scale: float = 1.0              # position-actuator damping
  motor_strength_scale: float = 1.0  # actuator force limits
  gravity: tuple | None = None       # e.g. (0, 0, -9.5)
  action_delay_s: float = 0.0        # actuation latency
  obs_noise_std: float = 0.0         # Gaussian noise on float observation leaves

  def apply(self, model: mujoco.MjModel) -> mujoco.MjModel:
    """Returns a modified copy of `model`."""
    m = copy.deepcopy(model)
    m.geom_friction[:, 0] *= self.friction_scale
    m.body_mass[:] *= self.mass_scale
    m.body_inertia[:] *= self.mass_scale
    m.dof_damping[:] *= self.damping_scale
    positional = m.actuator_biasprm[:, 1] != 0  # position servos: bias = -kp q - kv qdot
    m.actuator_gainprm[positional, 0] *= self.kp_scale
    m.actuator_biasprm[positional, 1] *= self.kp_scale
    m.actuator_biasprm[positional, 2] *= self.kv_scale
    m.actuator_forcerange[:] *= self.motor_strength_scale
    if self.gravity is not None:
      m.opt.gravity[:] = self.gravity
    return m


def clip_to_ctrlrange(model: mujoco.MjModel, data: mujoco.MjData, action: np.ndarray) -> np.ndarray:
  del data
  lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
  limited = model.actuator_ctrllimited.astype(bool)
  return np.where(limited, np.clip(action, lo, hi), action)


class MujocoRobot(Robot):
  """Native MuJoCo robot, stepped in real time by a background thread.

  Args:
    model: MjModel or path to an MJCF.
    observation_builder / observation_spec: see module docstring.
    action_dim: size of the action `send_action` takes.
    action_adapter: action -> ctrl (default `clip_to_ctrlrange`).
    control_hz: the rate the robot expects commands at (advertised to the executor).
    overrides: physics differences from the MJCF.
    keyframe: keyframe name to reset to (None: the model's default qpos).
    real_time: pace physics to the wall clock; False runs only through `step_physics`.
    seed: RNG seed for observation noise.
  """

  def __init__(self, model: mujoco.MjModel | str, *, observation_builder: ObservationBuilder,
               observation_spec: dict, action_dim: int, action_adapter: ActionAdapter | None = None,
               control_hz: float = 50.0, overrides: PhysicsOverrides | None = None,
               keyframe: str | None = None, real_time: bool = True, seed: int = 0):
    if isinstance(model, str):
      model = mujoco.MjModel.from_xml_path(model)
    self.nominal_model = model
    self.overrides = overrides or PhysicsOverrides()
    self.model = self.overrides.apply(model)
    self.data = mujoco.MjData(self.model)
    self.observation_builder = observation_builder
    self.observation_spec = observation_spec
    self.action_spec = ArraySpec((int(action_dim),), "float32")
    self.action_adapter = action_adapter or clip_to_ctrlrange
    self.control_hz = float(control_hz)
    self.keyframe = keyframe
    self.real_time = real_time
    self._rng = np.random.default_rng(seed)
    self._lock = threading.RLock()
    self._pending: collections.deque = collections.deque()  # (apply_at_sim_time, ctrl)
    self._info: dict = {}
    self._stopped = False
    self.overruns = 0          # times the physics thread fell >50 ms behind and resynced
    self.actions_received = 0
    self._wall_start = None
    self._sim_start = 0.0
    act_joints = [self.model.actuator_trnid[a, 0] for a in range(self.model.nu)
                  if int(self.model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)]
    self._act_qpos = np.array([self.model.jnt_qposadr[j] for j in act_joints], int)
    self._wrench_adr = self._find_wrench_sensors()
    self.reset()
    self._running = False
    self._thread: threading.Thread | None = None
    if real_time:
      self.start()

  # --- physics thread ------------------------------------------------------------------------

  def start(self) -> None:
    if self._thread is not None:
      return
    self._running = True
    self._thread = threading.Thread(target=self._physics_loop, name="mujoco-robot", daemon=True)
    self._thread.start()

  def _physics_loop(self) -> None:
    dt = float(self.model.opt.timestep)
    next_time = time.perf_counter()
    with self._lock:
      self._wall_start, self._sim_start = next_time, float(self.data.time)
    while self._running:
      self.step_physics(1)
      next_time += dt
      delay = next_time - time.perf_counter()
      if delay > 0:
        time.sleep(delay)
      elif delay < -0.05:  # fell far behind (loaded machine): resync instead of bursting
        self.overruns += 1
        next_time = time.perf_counter()

  def step_physics(self, steps: int = 1) -> None:
    """Advances physics by `steps` timesteps (called by the thread, or directly if not real time)."""
    with self._lock:
      for _ in range(steps):
        while self._pending and self._pending[0][0] <= self.data.time + 1e-9:
          self.data.ctrl[:] = self._pending.popleft()[1]
        mujoco.mj_step(self.model, self.data)

  def real_time_factor(self) -> float:
    """Simulated seconds per wall-clock second since the physics thread started."""
    with self._lock:
      if self._wall_start is None:
        return float("nan")
      wall = time.perf_counter() - self._wall_start
      return (float(self.data.time) - self._sim_start) / max(wall, 1e-9)

  # --- Robot interface -----------------------------------------------------------------------

  def inspect(self, fn: Callable[[mujoco.MjModel, mujoco.MjData], Any]) -> Any:
    """Runs ``fn(model, data)`` on a consistent physics state (the physics thread waits)."""
    with self._lock:
      return fn(self.model, self.data)

  def set_info(self, key: str, value: Any) -> None:
    """Stores robot-side context the observation builder reads (e.g. a velocity command)."""
    with self._lock:
      self._info[key] = value

  def get_observation(self) -> dict:
    with self._lock:
      obs = self.observation_builder(self.model, self.data, dict(self._info))
    if self.overrides.obs_noise_std > 0:
      obs = _add_noise(obs, self._rng, self.overrides.obs_noise_std)
    return obs

  def send_action(self, action: np.ndarray) -> None:
    action = np.asarray(action, np.float32)
    if action.shape != self.action_spec.shape:
      raise ValueError(f"action has shape {action.shape}, expected {self.action_spec.shape}")
    if not np.all(np.isfinite(action)):
      raise ValueError("action contains non-finite values")
    with self._lock:
      if self._stopped:
        return
      ctrl = np.asarray(self.action_adapter(self.model, self.data, action), float)
      self._info["last_action"] = action
      self.actions_received += 1
      if self.overrides.action_delay_s > 0:
        self._pending.append((self.data.time + self.overrides.action_delay_s, ctrl))
      else:
        self.data.ctrl[:] = ctrl

  def stop(self) -> None:
    with self._lock:
      self._stopped = True
      self._pending.clear()
      self.data.ctrl[:] = self._hold_ctrl()

  @property
  def stopped(self) -> bool:
    return self._stopped

  def reset(self) -> dict:
    with self._lock:
      if self.keyframe is not None:
        key = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_KEY, self.keyframe)
        if key < 0:
          raise KeyError(f"keyframe '{self.keyframe}' not in the model")
        mujoco.mj_resetDataKeyframe(self.model, self.data, key)
      else:
        mujoco.mj_resetData(self.model, self.data)
        self.data.ctrl[:] = self._hold_ctrl()
      mujoco.mj_forward(self.model, self.data)
      self._pending.clear()
      self._info.pop("last_action", None)
      self._stopped = False
      self._wall_start, self._sim_start = time.perf_counter(), float(self.data.time)
    return self.get_observation()

  def joint_positions(self) -> np.ndarray:
    with self._lock:
      return self.data.qpos[self._act_qpos].copy()

  def wrench(self) -> np.ndarray | None:
    if self._wrench_adr is None:
      return None
    with self._lock:
      return self.data.sensordata[self._wrench_adr].copy()

  def close(self) -> None:
    self._running = False
    if self._thread is not None:
      self._thread.join(timeout=2.0)
      self._thread = None

  # --- helpers -------------------------------------------------------------------------------

  def _hold_ctrl(self) -> np.ndarray:
    """Controls that hold the current pose: position servos target the current joint angles."""
    ctrl = np.zeros(self.model.nu)
    for a in range(self.model.nu):
      positional = self.model.actuator_biasprm[a, 1] != 0
      if positional and int(self.model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
        ctrl[a] = self.data.qpos[self.model.jnt_qposadr[self.model.actuator_trnid[a, 0]]]
    return ctrl

  def _find_wrench_sensors(self) -> np.ndarray | None:
    adr = {}
    for s in range(self.model.nsensor):
      kind = int(self.model.sensor_type[s])
      if kind == int(mujoco.mjtSensor.mjSENS_FORCE) and "force" not in adr:
        adr["force"] = self.model.sensor_adr[s]
      elif kind == int(mujoco.mjtSensor.mjSENS_TORQUE) and "torque" not in adr:
        adr["torque"] = self.model.sensor_adr[s]
    if len(adr) < 2:
      return None
    return np.concatenate([np.arange(adr["force"], adr["force"] + 3),
                           np.arange(adr["torque"], adr["torque"] + 3)])


def _add_noise(obs: Mapping, rng: np.random.Generator, std: float) -> dict:
  out = {}
  for key, value in obs.items():
    if isinstance(value, Mapping):
      out[key] = _add_noise(value, rng, std)
    elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
      out[key] = (value + rng.normal(0.0, std, value.shape)).astype(value.dtype)
    else:
      out[key] = value
  return out


# --- the project's arm -----------------------------------------------------------------------------

ARM_OBSERVATION_SPEC = {
    "joint_pos": ArraySpec((6,), "float32"),
    "joint_vel": ArraySpec((6,), "float32"),
    "ee_pos": ArraySpec((3,), "float32"),
    "wrench": ArraySpec((6,), "float32"),
}


def arm_observation(model: mujoco.MjModel, data: mujoco.MjData, info: dict) -> dict:
  """Proprioception of `arm_6dof.xml`: joint positions/velocities, tool position, wrist F/T."""
  del info
  site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "ee")
  return {
      "joint_pos": data.qpos[:6].astype(np.float32),
      "joint_vel": data.qvel[:6].astype(np.float32),
      "ee_pos": data.site_xpos[site].astype(np.float32),
      "wrench": data.sensordata[:6].astype(np.float32),
  }


def make_arm6_robot(*, control_hz: float = 50.0, overrides: PhysicsOverrides | None = None,
                    real_time: bool = True, seed: int = 0) -> MujocoRobot:
  """The small 6-DoF test arm of `vlajax/envs/assets/arm_6dof.xml` (wrist F/T sensor; actions
  are joint position targets), the bridge tests' generic robot. The twin of the manipulation
  tasks' 7-DoF arm is `arm_task_robot.make_arm_robot(env)`."""
  return MujocoRobot(ARM_XML, observation_builder=arm_observation,
                     observation_spec=ARM_OBSERVATION_SPEC, action_dim=6, control_hz=control_hz,
                     overrides=overrides, keyframe="home", real_time=real_time, seed=seed)


# --- the quadruped of the `quadruped_joystick` env -------------------------------------------------

def _rotate_inv(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
  """World-frame vec float[3] -> body frame of unit quaternion (w, x, y, z)."""
  w, u = quat[0], -quat[1:]
  return vec + 2.0 * np.cross(u, np.cross(u, vec) + w * vec)


def quadruped_proprioception(data: mujoco.MjData, default_pose: np.ndarray) -> dict:
  """The joystick env's clean proprioception, in numpy: body-frame linear velocity (3), gyro (3),
  projected gravity (3), joint angles - default (12), joint velocities (12)."""
  quat = data.qpos[3:7]
  return {
      "linvel": _rotate_inv(quat, data.qvel[0:3]),
      "gyro": data.qvel[3:6].copy(),
      "gravity": _rotate_inv(quat, np.array([0.0, 0.0, -1.0])),
      "joint_pos": data.qpos[7:] - default_pose,
      "joint_vel": data.qvel[6:].copy(),
  }


def make_quadruped_robot(env, *, overrides: PhysicsOverrides | None = None, noise_level: float = 0.0,
                         real_time: bool = True, seed: int = 0) -> MujocoRobot:
  """Native-MuJoCo twin of a `QuadrupedJoystick` env (``vlajax.envs.make("quadruped_joystick")``).

  Observation ``{"state": float32[48]}`` is assembled exactly as the env's ``obs["state"]``
  (linvel, gyro, gravity, joint_pos - default, joint_vel, last action, command), with the env's
  uniform noise scaled by `noise_level` (0: clean). Actions float[12] in [-1, 1] become PD targets
  ``default_pose + clip(a, -1, 1) * action_scale``. The joystick command is set with
  ``robot.set_info("command", float[3])``. Physics runs at the env's ``sim_dt``.
  """
  cfg = env.config
  model = copy.deepcopy(env.mj_model)
  model.opt.timestep = cfg.sim_dt
  home = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home")
  default_pose = model.key_qpos[home, 7:].copy()
  scales = {k: float(v) for k, v in cfg.noise_config.scales.items()}
  nu = model.nu
  rng = np.random.default_rng(seed + 1)

  def build(m, data, info):
    del m
    parts = quadruped_proprioception(data, default_pose)
    if noise_level > 0:
      parts = {k: v + rng.uniform(-1, 1, v.shape) * noise_level * scales[k] for k, v in parts.items()}
    last_action = np.asarray(info.get("last_action", np.zeros(nu)), np.float64)
    command = np.asarray(info.get("command", np.zeros(3)), np.float64)
    state = np.concatenate([parts["linvel"], parts["gyro"], parts["gravity"], parts["joint_pos"],
                            parts["joint_vel"], last_action, command])
    return {"state": state.astype(np.float32)}

  def adapt(m, data, action):
    del m, data
    return default_pose + np.clip(action, -1.0, 1.0) * cfg.action_scale

  return MujocoRobot(model, observation_builder=build,
                     observation_spec={"state": ArraySpec((48,), "float32")}, action_dim=nu,
                     action_adapter=adapt, control_hz=1.0 / cfg.ctrl_dt, overrides=overrides,
                     keyframe="home", real_time=real_time, seed=seed)
