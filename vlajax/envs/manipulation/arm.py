"""The tabletop arm scene shared by the manipulation tasks: model indices, action spaces, IK.

Scene: `assets/arm_7dof.xml`, a 7-DoF arm with a parallel-jaw gripper (Franka Panda dimensions) on
a table (the plane z = 0), one free cube and a mocap `target` marker (`tabletop_language` builds a
larger scene on it: `scene.py`). 50 Hz control
(`ctrl_dt=0.02`) over 4 MJX substeps (`sim_dt=0.005`).

Collisions: only the cube collides. Contacts are the MJCF's explicit pairs (every geom has
contype = conaffinity = 0): the cube with the table, each fingertip pad and the hand
(`tabletop_language` adds cube-cube pairs). The arm's links do not collide with the table, with
each other or with the fingers' non-pad geoms; only the joint limits (limit constraints in the
physics, and the ctrl ranges of the position servos) keep the arm in its workspace. A policy or
expert can therefore sweep links through the table; the bridge's native-MuJoCo twin (same model)
allows it too, a real robot would not.

Joint limits (rad, from `assets/arm_7dof.xml`, the Panda's): joint1, joint3, joint5, joint7
[-2.8973, 2.8973]; joint2 [-1.7628, 1.7628]; joint4 [-3.0718, -0.0698]; joint6 [-0.0175, 3.7525];
each finger [0, 0.04] m (0 closed). Both action spaces clip the actuator targets to these ranges.

Action spaces (`config.action_space`), every entry in [-1, 1]:
  "joint_delta"  f32[8]: arm joint position targets move by `a[:7] * joint_action_scale` rad per
                 control step (clipped to the joint limits), the RL space.
  "ee_delta"     f32[7]: the gripper's tool point moves by `a[:3] * ee_action_scale` m and rotates
                 by the world-frame rotation vector `a[3:6] * ee_rotation_scale` rad per control
                 step (OXE/VLA style), through damped-least-squares IK on the joint targets.
  In both, the last entry is the gripper command, absolute: -1 closed, +1 open (each finger's
  target is `(a + 1) / 2 * 0.04` m).

`info` of every task: `rng`, `step` (i32), `last_action` f32[A], `ctrl` f32[9] (the actuator
targets: 7 joints in rad, 2 fingers in m), `target` f32[3] (the task's target or goal point; also
`data.mocap_pos` of the marker, for cameras), `episode_success` is added by the episode wrapper.
`obs["privileged_state"]` is `obs["state"]` (without observation noise) followed by every free
object's position (3 each), velocity (6 each) and `target`.

Domain randomization (`config.randomization`, on by default; `manipulation/randomization.py`):
`reset(rng, dr_ranges=None)` draws object mass / friction / size, table friction, initial-pose
jitter, actuator gains, action latency and joint-angle noise into `info["dr"]` from
`info["dr_ranges"]`; `step` applies the drawn model (`model.replace`), sends the actuator targets
of `action_latency` steps ago to the motors (`info["ctrl_history"]` f32[L+1, 9]; `info["ctrl"]`
stays the latest commanded targets) and adds the joint-angle noise to `obs["state"]`'s 7 arm
joint angles. With `randomization.enabled=False` the env is the un-randomized one.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import mujoco
import numpy as np
from jax.scipy import linalg as jsp_linalg
from mujoco import mjx

from vlajax.envs import assets
from vlajax.envs import randomization as dr_lib
from vlajax.envs.base import Env, State
from vlajax.envs.manipulation import randomization as arm_dr

ACTION_SPACES = ("joint_delta", "ee_delta")
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGERS = ("finger_left", "finger_right")
FINGER_OPEN = 0.04   # m per finger
CUBE_HALF = 0.02     # m
# Franka's "ready" pose (joint 7 at 0 here: the hand has no -45 degree offset).
HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.0)


def arm_config() -> ml_collections.ConfigDict:
  """Physics, control and action-space config common to the arm tasks."""
  return ml_collections.ConfigDict({
      "ctrl_dt": 0.02,
      "sim_dt": 0.005,
      "episode_length": 200,
      "action_space": "joint_delta",
      "joint_action_scale": 0.04,    # rad per control step at |a| = 1 (Playground's Panda value)
      "ee_action_scale": 0.01,       # m per control step at |a| = 1 (0.5 m/s)
      "ee_rotation_scale": 0.05,     # rad per control step at |a| = 1
      "ik_damping": 0.05,            # lambda of the damped least squares
      "init_joint_noise": 0.05,      # rad, uniform around the home pose
      # Physics backend (vlajax.envs.backend). Contacts are the explicit pairs of the MJCF: cube
      # with table (<= 4), with each pad and the hand (box-box, <= 8 each); rows per world at
      # condim 3 pyramidal: 4 per contact, plus the 9 joint limits.
      "impl": "jax",
      "naconmax_per_env": 28,
      "njmax": 128,
      "randomization": arm_dr.default_config(),
  })


class ArmEnv(Env):
  """Base for the tabletop tasks: the scene, the action spaces, proprioception, IK, and the
  reset / step loop.

  A task implements `sample_task(rng) -> (object_poses f32[n, 7], target f32[3], task_info)` (a
  pose per free object of `OBJECTS`: position, quaternion), `success(data, info) -> bool[]`,
  `reward_terms(data, info, action) -> {term: f32[]}` (weighted by `config.reward_scales`) and
  `task_obs(data, info) -> f32[k]`; `update_task_info(data, info)` may latch task variables after
  each step, `marker_positions(target, task_info) -> f32[nmocap, 3]` places the scene's mocap
  bodies, and `focus_object(info) -> i32[]` names the object the task is about (the experts'
  object) and `holds_object(info) -> bool[]` whether it ends held up; `placed(objects, target,
  task_info) -> (target, task_info)` sees the object poses after DR moved them (for task variables
  that depend on where the objects start).
  """

  OBJECTS = ("cube",)  # the free joints of the scene's objects, in `sample_task`'s order
  # The task in words, for language-conditioned policies (language tasks: each episode's
  # instruction, `instructions.text`).
  PROMPT = ""

  def __init__(self, config: ml_collections.ConfigDict):
    if config.action_space not in ACTION_SPACES:
      raise ValueError(f"unknown action_space '{config.action_space}' (have: "
                       f"{', '.join(ACTION_SPACES)})")
    mj_model = self.build_model(config)
    super().__init__(config, mj_model)
    m = mj_model
    self._arm_qpos = np.array([m.joint(j).qposadr[0] for j in ARM_JOINTS])
    self._arm_dofs = np.array([m.joint(j).dofadr[0] for j in ARM_JOINTS])
    self._finger_qpos = np.array([m.joint(j).qposadr[0] for j in FINGERS])
    self._cube_qpos = int(m.joint("cube").qposadr[0])
    self._object_qpos = jnp.asarray([m.joint(j).qposadr[0] for j in self.OBJECTS], jnp.int32)
    self._object_dofs = jnp.asarray([m.joint(j).dofadr[0] for j in self.OBJECTS], jnp.int32)
    self._grip_site = m.site("grip").id
    self._grip_body = int(m.site_bodyid[self._grip_site])
    self._pads = np.array([m.geom("pad_left").id, m.geom("pad_right").id])
    self._ctrl_low = jnp.asarray(m.actuator_ctrlrange[:, 0], jnp.float32)
    self._ctrl_high = jnp.asarray(m.actuator_ctrlrange[:, 1], jnp.float32)
    self._home = jnp.asarray(HOME, jnp.float32)
    self._qpos0 = jnp.asarray(m.key("home").qpos, jnp.float32)
    self.dr_targets = arm_dr.Targets.from_model(
        m, self.OBJECTS, max_action_latency=config.randomization.max_action_latency)
    self.visual_targets = arm_dr.VisualTargets.from_model(m, self.OBJECTS)
    self._default_ranges = arm_dr.ranges_from_config(config.randomization)
    self._object_half = jnp.asarray(self.dr_targets.nominal_half)

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return arm_config()

  @classmethod
  def build_model(cls, config: ml_collections.ConfigDict) -> mujoco.MjModel:
    """The scene's `MjModel` (the arm, the table, one cube, the target marker)."""
    del config
    return assets.load("arm_7dof")

  @property
  def action_size(self) -> int:
    return 8 if self.config.action_space == "joint_delta" else 7

  # -- the task interface -----------------------------------------------------------------------

  def sample_task(self, rng: jax.Array) -> tuple[jax.Array, jax.Array, dict]:
    raise NotImplementedError

  def success(self, data: mjx.Data, info: dict) -> jax.Array:
    raise NotImplementedError

  def reward_terms(self, data: mjx.Data, info: dict, action: jax.Array) -> dict[str, jax.Array]:
    raise NotImplementedError

  def task_obs(self, data: mjx.Data, info: dict) -> jax.Array:
    raise NotImplementedError

  def update_task_info(self, data: mjx.Data, info: dict) -> dict:
    del data
    return info

  def marker_positions(self, target: jax.Array, task_info: dict) -> jax.Array:
    """f32[nmocap, 3]: the mocap bodies' positions (here the one target marker)."""
    del task_info
    return target[None]

  def focus_object(self, info: dict) -> jax.Array:
    """i32[]: index into `OBJECTS` of the object the task is about."""
    del info
    return jnp.zeros((), jnp.int32)

  def holds_object(self, info: dict) -> jax.Array:
    """bool[]: the task ends holding the object up rather than setting it down."""
    del info
    return jnp.zeros((), bool)

  def placed(self, objects: jax.Array, target: jax.Array, task_info: dict
             ) -> tuple[jax.Array, dict]:
    """`(target, task_info)` given the final initial object poses f32[n, 7] (after DR)."""
    del objects
    return target, task_info

  # -- domain randomization ---------------------------------------------------------------------

  @property
  def dr_enabled(self) -> bool:
    return bool(self.config.randomization.enabled)

  def default_dr_ranges(self) -> arm_dr.Ranges:
    """The config's DR ranges, `{field: f32[2]}` (`manipulation/randomization.py`)."""
    return dict(self._default_ranges)

  def nominal_dr_ranges(self) -> arm_dr.Ranges:
    """Ranges that reproduce the un-randomized env exactly (`arm_dr.nominal_ranges`)."""
    return arm_dr.nominal_ranges(self.dr_targets)

  @classmethod
  def default_adr_config(cls) -> ml_collections.ConfigDict:
    """ADR bounds and steps of the arm's DR fields (`arm_dr.default_adr_config`)."""
    return arm_dr.default_adr_config()

  def object_half_size(self, info: dict, index) -> jax.Array:
    """f32[]: half-size (m) of object `index` of `OBJECTS` in this episode (DR scales it)."""
    half = self._object_half[index]
    if "dr" not in info:
      return half
    return half * info["dr"]["object_size_scale"][index]

  def half_size_change(self, info: dict, index) -> jax.Array:
    """f32[]: `object_half_size` minus the nominal half-size (m; exactly 0 without DR), so that
    thresholds written for the nominal cube stay bit-identical when DR is off."""
    return self.object_half_size(info, index) - self._object_half[index]

  def physics_model(self, info: dict) -> mjx.Model:
    """The episode's MJX model: the drawn DR applied (a pure replace), or the nominal one."""
    if not self.dr_enabled:
      return self.mjx_model
    return arm_dr.apply(self.mjx_model, info["dr"], self.dr_targets)

  def visual_overrides(self, rng: jax.Array, cfg: ml_collections.ConfigDict | None = None
                       ) -> dict[str, jax.Array]:
    """Per-env renderer overrides from `rng` u32[B, 2] (batched: [B, ...] per field) or one key:
    camera pose, lights, object and table colours (`arm_dr.visual_overrides`). A demo collector
    draws them once per episode and renders every frame of it with them:

      overrides = env.visual_overrides(episode_keys)            # [B, ...] per field
      images = renderer.render(states, overrides=overrides)     # BatchRenderer, host side
    """
    draw = lambda k: arm_dr.visual_overrides(self.mjx_model, k, self.visual_targets, cfg)
    return jax.vmap(draw)(rng) if rng.ndim == 2 else draw(rng)

  # -- reset / step -----------------------------------------------------------------------------

  def reset(self, rng: jax.Array, dr_ranges: arm_dr.Ranges | None = None) -> State:
    """A fresh episode; DR draws from `dr_ranges` (default: the config's), kept in the state."""
    ranges = self.default_dr_ranges() if dr_ranges is None else dict(dr_ranges)
    arm_dr.check_ranges(ranges)
    ranges = {k: jnp.asarray(v, jnp.float32) for k, v in ranges.items()}
    rng, k_task, k_arm = jax.random.split(rng, 3)
    rng, k_dr, k_obs = jax.random.split(rng, 3)
    objects, target, task_info = self.sample_task(k_task)
    if self.dr_enabled:
      draws = arm_dr.sample(k_dr, ranges, self.dr_targets)
      objects = arm_dr.place_objects(objects, draws, self.dr_targets)
      target, task_info = self.placed(objects, target, task_info)
    else:
      draws = arm_dr.nominal_draws(self.dr_targets)
    info = {"dr": draws, "dr_ranges": ranges}
    model = self.physics_model(info)
    data = self.initial_data(k_arm, objects, self.marker_positions(target, task_info), model)
    history = jnp.tile(data.ctrl[None], (self.dr_targets.max_action_latency + 1, 1))
    info.update({"rng": rng, "step": jnp.zeros((), jnp.int32),
                 "last_action": jnp.zeros(self.action_size), "ctrl": data.ctrl,
                 "ctrl_history": history, "target": target, **task_info})
    metrics = {f"reward/{name}": jnp.zeros(()) for name in self.config.reward_scales}
    metrics["success"] = jnp.zeros(())
    obs = self._observe(data, info, k_obs)
    return State(data, obs, jnp.zeros(()), jnp.zeros(()), metrics, info)

  def step(self, state: State, action: jax.Array) -> State:
    info = dict(state.info)
    rng, k_obs = jax.random.split(info["rng"])
    ctrl = self.apply_action(state.data, info["ctrl"], action)
    history = dr_lib.push_history(info["ctrl_history"], ctrl)
    applied = dr_lib.delayed_action(history, info["dr"]["action_latency"]) \
        if self.dr_enabled else ctrl
    data = self.physics_step(self.physics_model(info), state.data, applied)
    action = jnp.clip(action, -1.0, 1.0)
    info = self.update_task_info(data, info)
    terms = self.reward_terms(data, info, action)
    scaled = {name: terms[name] * scale for name, scale in self.config.reward_scales.items()}
    info.update(rng=rng, step=info["step"] + 1, last_action=action, ctrl=ctrl,
                ctrl_history=history)
    metrics = {f"reward/{name}": value for name, value in scaled.items()}
    metrics["success"] = self.success(data, info).astype(jnp.float32)
    done = self.unstable(data).astype(jnp.float32)
    obs = self._observe(data, info, k_obs)
    return State(data, obs, sum(scaled.values()), done, metrics, info)

  def _observe(self, data: mjx.Data, info: dict, rng: jax.Array) -> dict[str, jax.Array]:
    """`state` (arm joint angles noisy under DR) and the noise-free `privileged_state`."""
    clean = jnp.concatenate([self.proprioception(data), info["last_action"],
                             self.task_obs(data, info)])
    state = clean
    if self.dr_enabled:
      angles = arm_dr.noisy_joint_angles(clean[:7], info["dr"], rng)
      state = clean.at[:7].set(angles)
    n = len(self.OBJECTS)
    positions = jnp.stack([self.object_pos(data, i) for i in range(n)]).reshape(-1)
    velocities = jnp.stack([self.object_vel(data, i) for i in range(n)]).reshape(-1)
    privileged = jnp.concatenate([clean, positions, velocities, info["target"]])
    return {"state": state, "privileged_state": privileged}

  # -- reset helpers ----------------------------------------------------------------------------

  def initial_data(self, rng: jax.Array, object_poses: jax.Array,
                   marker_positions: jax.Array, model: mjx.Model | None = None) -> mjx.Data:
    """Home pose plus uniform joint noise, gripper open, the objects at `object_poses`
    f32[n, 7] (position, quaternion) and the mocap bodies at `marker_positions` f32[nmocap, 3];
    `mjx.forward` done with `model` (default: the nominal model)."""
    noise = self.config.init_joint_noise
    arm_q = self._home + jax.random.uniform(rng, (7,), minval=-noise, maxval=noise)
    arm_q = jnp.clip(arm_q, self._ctrl_low[:7], self._ctrl_high[:7])
    qpos = self._qpos0.at[self._arm_qpos].set(arm_q)
    qpos = qpos.at[self._finger_qpos].set(FINGER_OPEN)
    slots = self._object_qpos[:, None] + jnp.arange(7)
    qpos = qpos.at[slots].set(object_poses)
    ctrl = jnp.concatenate([arm_q, jnp.full((2,), FINGER_OPEN)])
    data = self.make_data()
    data = data.replace(qpos=qpos, qvel=jnp.zeros_like(data.qvel), ctrl=ctrl,
                        mocap_pos=marker_positions)
    return mjx.forward(self.mjx_model if model is None else model, data)

  # -- actions ----------------------------------------------------------------------------------

  def check_action(self, action: jax.Array) -> None:
    if action.shape[-1:] != (self.action_size,):
      raise ValueError(f"action has shape {tuple(action.shape)}; the '{self.config.action_space}' "
                       f"action space takes f32[{self.action_size}]")

  def apply_action(self, data: mjx.Data, ctrl: jax.Array, action: jax.Array) -> jax.Array:
    """The next actuator targets f32[9] from the current ones `ctrl` and `action` (clipped to
    [-1, 1]) in the configured action space."""
    self.check_action(action)
    action = jnp.clip(action, -1.0, 1.0)
    cfg = self.config
    if cfg.action_space == "joint_delta":
      arm = ctrl[:7] + action[:7] * cfg.joint_action_scale
    else:
      arm = self.ee_delta_to_joint_targets(data, ctrl[:7], action[:3] * cfg.ee_action_scale,
                                           action[3:6] * cfg.ee_rotation_scale)
    fingers = jnp.full((2,), (action[-1] + 1.0) * 0.5 * FINGER_OPEN)
    return jnp.clip(jnp.concatenate([arm, fingers]), self._ctrl_low, self._ctrl_high)

  def ee_delta_to_joint_targets(self, data: mjx.Data, arm_targets: jax.Array,
                                delta_pos: jax.Array, delta_rot: jax.Array) -> jax.Array:
    """Joint targets f32[7] that move the tool point by `delta_pos` f32[3] (m) and rotate it by
    the world-frame rotation vector `delta_rot` f32[3] (rad): `dq = J^T (J J^T + lambda^2 I)^-1 e`
    with the grip site's 6x7 Jacobian at `data`, added to the current targets `arm_targets` (so a
    zero action holds the targets and the arm does not drift under gravity)."""
    jacp, jacr = mjx.jac(self.mjx_model, data, data.site_xpos[self._grip_site], self._grip_body)
    jac = jnp.concatenate([jacp[self._arm_dofs].T, jacr[self._arm_dofs].T])   # [6, 7]
    error = jnp.concatenate([delta_pos, delta_rot])
    damping = self.config.ik_damping ** 2 * jnp.eye(6)
    factor = jsp_linalg.cho_factor(jac @ jac.T + damping)
    return arm_targets + jac.T @ jsp_linalg.cho_solve(factor, error)

  # -- observations -----------------------------------------------------------------------------

  def grip_pos(self, data: mjx.Data) -> jax.Array:
    """f32[3]: the tool point between the fingertips (world frame, m)."""
    return data.site_xpos[self._grip_site]

  def grip_yaw(self, data: mjx.Data) -> jax.Array:
    """f32[]: the gripper's rotation about the world z axis (rad; 0 at the home pose)."""
    mat = data.site_xmat[self._grip_site]
    return jnp.arctan2(mat[1, 0], mat[0, 0])

  def gripper_opening(self, data: mjx.Data) -> jax.Array:
    """f32[]: distance between the fingers (m; 0.08 open, 0 closed)."""
    return jnp.sum(data.qpos[self._finger_qpos])

  def object_pos(self, data: mjx.Data, index) -> jax.Array:
    """f32[3]: position of object `index` of `OBJECTS` (an int or an i32[] tracer)."""
    return jax.lax.dynamic_slice(data.qpos, (self._object_qpos[index],), (3,))

  def object_quat(self, data: mjx.Data, index) -> jax.Array:
    return jax.lax.dynamic_slice(data.qpos, (self._object_qpos[index] + 3,), (4,))

  def object_yaw(self, data: mjx.Data, index) -> jax.Array:
    """f32[]: the object's rotation about z (rad), assuming it rests on a face."""
    w, x, y, z = self.object_quat(data, index)
    return jnp.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))

  def object_vel(self, data: mjx.Data, index) -> jax.Array:
    """f32[6]: the object's linear (world) and angular velocity."""
    return jax.lax.dynamic_slice(data.qvel, (self._object_dofs[index],), (6,))

  def cube_pos(self, data: mjx.Data) -> jax.Array:
    """f32[3]: the position of the scene's first object, "cube"."""
    return self.object_pos(data, 0)

  def cube_quat(self, data: mjx.Data) -> jax.Array:
    return self.object_quat(data, 0)

  def cube_yaw(self, data: mjx.Data) -> jax.Array:
    return self.object_yaw(data, 0)

  def cube_vel(self, data: mjx.Data) -> jax.Array:
    return self.object_vel(data, 0)

  PROPRIOCEPTION_SIZE = 18   # obs["state"][:18] is `proprioception`, joint angles noisy under DR

  def proprioception(self, data: mjx.Data) -> jax.Array:
    """f32[18]: arm joint angles (7), joint velocities (7), gripper opening (1), tool point (3)."""
    return jnp.concatenate([data.qpos[self._arm_qpos], data.qvel[self._arm_dofs],
                            self.gripper_opening(data)[None], self.grip_pos(data)])

  def unstable(self, data: mjx.Data) -> jax.Array:
    """bool[]: non-finite physics or an object off the table."""
    bad = ~jnp.all(jnp.isfinite(data.qpos)) | ~jnp.all(jnp.isfinite(data.qvel))
    heights = data.qpos[self._object_qpos + 2]
    return bad | jnp.any(heights < -0.05)


def cube_pose(xy: jax.Array, yaw: jax.Array) -> jax.Array:
  """f32[7]: a cube resting on the table at `xy` f32[2] rotated by `yaw` about z."""
  return jnp.concatenate([xy, jnp.array([CUBE_HALF]),
                          jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])])
