"""Quadruped joystick: a Go1-sized quadruped tracks sampled velocity commands (vx, vy, yaw rate).

Behaviour follows MuJoCo Playground's Go1 joystick task (its reward terms and defaults): 50 Hz control
(`ctrl_dt=0.02`) over 5 MJX substeps (`sim_dt=0.004`), PD position targets
`default_pose + action * action_scale` with Kp = 35, Kd = 0.5, reward `clip(sum(terms) * dt, 0, 1e4)`.

Spaces (one env):
  action                    f32[12] in [-1, 1] (FR, FL, RR, RL x abduction, hip, knee)
  obs["state"]              f32[48]: noisy local linear velocity (3), gyro (3), projected gravity (3),
                            joint angles - default (12), joint velocities (12), last action (12),
                            command (3)
  obs["privileged_state"]   f32[87]: the same 48 without noise, actuator forces (12), foot contacts
                            (4), feet air time (4), trunk height (1), and the DR draws the critic may
                            use: floor friction (1), torso mass offset (1), torso COM offset (3),
                            Kp scales (12), action latency (1)

`info`: `rng`, `step` (i32 control steps since reset), `command` f32[3], `last_action` f32[12],
`action_history` f32[L+1, 12] (latency buffer), `push_countdown` i32, `feet_air_time` f32[4],
`last_contact` bool[4], `dr` (draws, see `vlajax.envs.locomotion.randomization`), `dr_ranges` ({field: f32[2]}).
`done` is 1.0 when the trunk flips (up-vector z < 0), drops below `termination.min_height`, or the
state is not finite; the time limit is the episode wrapper's job.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from mujoco import mjx

from vlajax.envs import assets
from vlajax.envs import randomization as generic_dr
from vlajax.envs.locomotion import randomization as dr_lib
from vlajax.envs.base import Env, State

FEET = ("FR_foot", "FL_foot", "RR_foot", "RL_foot")
REWARD_TERMS = ("tracking_lin_vel", "tracking_ang_vel", "lin_vel_z", "ang_vel_xy", "orientation",
                "base_height", "pose", "torques", "action_rate", "feet_air_time", "termination")


def _rotate_inv(quat: jax.Array, vec: jax.Array) -> jax.Array:
  """Rotates world-frame `vec` f32[3] into the body frame of unit quaternion `quat` (w, x, y, z)."""
  w, u = quat[0], -quat[1:]
  return vec + 2.0 * jnp.cross(u, jnp.cross(u, vec) + w * vec)


TRACKING_METRICS = ("tracking/lin_vel_error", "tracking/ang_vel_error")


class QuadrupedJoystick(Env):
  """Velocity-command tracking on flat ground with domain randomization (`config.randomization`)."""

  def __init__(self, config: ml_collections.ConfigDict):
    mj_model = assets.load("quadruped")
    # PD gains from the config (position actuators: gain kp, bias -kp * q - kd * qdot).
    mj_model.actuator_gainprm[:, 0] = config.Kp
    mj_model.actuator_biasprm[:, 1] = -config.Kp
    mj_model.actuator_biasprm[:, 2] = -config.Kd
    super().__init__(config, mj_model)
    home = mj_model.key("home")
    self._init_qpos = jnp.asarray(home.qpos, jnp.float32)
    self._default_pose = jnp.asarray(home.qpos[7:], jnp.float32)
    self._feet = np.array([mj_model.geom(name).id for name in FEET])
    self._foot_radius = float(mj_model.geom_size[self._feet[0], 0])
    self._torso = mj_model.body("trunk").id
    self.targets = dr_lib.Targets.from_model(
        mj_model, floor_geom="floor", torso_body="trunk",
        max_action_latency=config.randomization.max_action_latency)
    self._default_ranges = dr_lib.ranges_from_config(config.randomization)
    unknown = sorted(set(config.reward_config.scales) - set(REWARD_TERMS))
    if unknown:
      raise KeyError(f"unknown reward term(s) {unknown} in reward_config.scales "
                     f"(terms: {list(REWARD_TERMS)})")

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "ctrl_dt": 0.02,
        "sim_dt": 0.004,
        "episode_length": 1000,
        "Kp": 35.0,
        "Kd": 0.5,
        "action_scale": 0.5,
        "init": {"pos_xy": 0.5, "yaw": float(np.pi), "base_vel": 0.5},
        "command_config": {
            "amplitude": (1.5, 0.8, 1.2),   # |vx| m/s, |vy| m/s, |yaw rate| rad/s, uniform in +-a
            "keep_prob": (0.9, 0.25, 0.5),  # probability each component is non-zero
            "resample_steps": 500,          # control steps between new commands
        },
        "reward_config": {
            "scales": {
                "tracking_lin_vel": 1.0, "tracking_ang_vel": 0.5, "lin_vel_z": -0.5,
                "ang_vel_xy": -0.05, "orientation": -5.0, "base_height": -1.0, "pose": 0.5,
                "torques": -0.0002, "action_rate": -0.01, "feet_air_time": 0.1,
                "termination": -1.0,
            },
            "tracking_sigma": 0.25,
            "base_height_target": 0.26,
            "feet_air_time_target": 0.1,
            "pose_weights": (1.0, 1.0, 0.1),  # per leg: abduction, hip, knee
        },
        "noise_config": {
            "level": 1.0,  # uniform noise of +-level*scale on each observed quantity
            "scales": {"joint_pos": 0.03, "joint_vel": 1.5, "gyro": 0.2, "gravity": 0.05,
                       "linvel": 0.1},
        },
        "termination": {"min_height": 0.12},
        "contact_threshold": 0.005,  # m of foot clearance counted as contact
        "randomization": dr_lib.default_config(),
        # Physics backend (vlajax.envs.backend). Only the 4 foot spheres touch the floor (at most 4
        # contacts; 8 leaves room); rows per world: 4 contacts x 4 (pyramidal condim 3) + 12
        # frictionloss + 12 joint limits = 40 at most (native MuJoCo peaks at 29 in random rollouts).
        "impl": "jax",
        "naconmax_per_env": 8,
        "njmax": 48,
    })

  # -- reset ------------------------------------------------------------------------------------

  def default_dr_ranges(self) -> dr_lib.Ranges:
    """The config's DR ranges, `{field: f32[2]}`."""
    return dict(self._default_ranges)

  def nominal_dr_ranges(self) -> dr_lib.Ranges:
    """Ranges that reproduce the un-randomized model (`randomization.nominal_ranges`)."""
    return dr_lib.nominal_ranges(self.targets)

  @classmethod
  def default_adr_config(cls) -> ml_collections.ConfigDict:
    """ADR bounds and steps of the quadruped's DR fields (`randomization.default_adr_config`)."""
    return dr_lib.default_adr_config()

  def brax_randomization_fn(self, ranges: dr_lib.Ranges | None = None):
    """brax-style `randomization_fn(sys, rng) -> (sys, in_axes)` for this env's model fields."""
    return dr_lib.brax_randomization_fn(self.targets, self.default_dr_ranges() if ranges is None
                                        else ranges)

  def reset(self, rng: jax.Array, dr_ranges: dr_lib.Ranges | None = None) -> State:
    """Fresh pose, command and DR draw. `dr_ranges` (default: the config's) are kept in the state."""
    ranges = self.default_dr_ranges() if dr_ranges is None else dict(dr_ranges)
    dr_lib.check_ranges(ranges)
    ranges = {k: jnp.asarray(v, jnp.float32) for k, v in ranges.items()}
    cfg = self.config
    rng, k_xy, k_yaw, k_vel, k_dr, k_cmd, k_push, k_obs = jax.random.split(rng, 8)

    qpos = self._init_qpos
    qpos = qpos.at[0:2].add(jax.random.uniform(k_xy, (2,), minval=-cfg.init.pos_xy,
                                               maxval=cfg.init.pos_xy))
    yaw = jax.random.uniform(k_yaw, (), minval=-cfg.init.yaw, maxval=cfg.init.yaw)
    qpos = qpos.at[3:7].set(jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)]))
    qvel = jnp.zeros(self.mj_model.nv).at[0:6].set(
        jax.random.uniform(k_vel, (6,), minval=-cfg.init.base_vel, maxval=cfg.init.base_vel))

    if cfg.randomization.enabled:
      draws = dr_lib.sample(k_dr, ranges, self.targets)
      model = dr_lib.apply(self.mjx_model, draws, self.targets)
    else:
      draws = dr_lib.nominal_draws(self.targets)
      model = self.mjx_model
    data = self.make_data().replace(qpos=qpos, qvel=qvel, ctrl=self._default_pose)
    data = mjx.forward(model, data)

    nu = self.action_size
    info = {
        "rng": rng,
        "step": jnp.zeros((), jnp.int32),
        "command": self.sample_command(k_cmd),
        "last_action": jnp.zeros(nu),
        "action_history": jnp.zeros((self.targets.max_action_latency + 1, nu)),
        "push_countdown": dr_lib.push_interval_steps(k_push, ranges, self.ctrl_dt),
        "feet_air_time": jnp.zeros(len(FEET)),
        "last_contact": jnp.zeros(len(FEET), bool),
        "dr": draws,
        "dr_ranges": ranges,
    }
    metrics = {f"reward/{name}": jnp.zeros(()) for name in REWARD_TERMS}
    metrics.update({name: jnp.zeros(()) for name in TRACKING_METRICS})
    obs = self._observe(data, info, self._foot_contact(data), k_obs)
    return State(data, obs, jnp.zeros(()), jnp.zeros(()), metrics, info)

  def sample_command(self, rng: jax.Array) -> jax.Array:
    """f32[3] (vx, vy, yaw rate): uniform in +-amplitude, each component zeroed with 1 - keep_prob."""
    k_val, k_keep = jax.random.split(rng)
    amp = jnp.asarray(self.config.command_config.amplitude, jnp.float32)
    value = jax.random.uniform(k_val, (3,), minval=-amp, maxval=amp)
    keep = jax.random.bernoulli(k_keep, jnp.asarray(self.config.command_config.keep_prob))
    return value * keep

  # -- step -------------------------------------------------------------------------------------

  def step(self, state: State, action: jax.Array) -> State:
    cfg = self.config
    info = dict(state.info)
    rng, k_push, k_obs, k_cmd = jax.random.split(info["rng"], 4)
    action = jnp.clip(action, -1.0, 1.0)
    data = state.data
    history = generic_dr.push_history(info["action_history"], action)

    if cfg.randomization.enabled:
      model = dr_lib.apply(self.mjx_model, info["dr"], self.targets)
      applied = generic_dr.delayed_action(history, info["dr"]["action_latency"])
      qvel, countdown, _ = dr_lib.maybe_push(k_push, data.qvel, info["push_countdown"],
                                             info["dr_ranges"], self.ctrl_dt)
      data = data.replace(qvel=qvel)
    else:
      model, applied, countdown = self.mjx_model, action, info["push_countdown"]

    data = self.physics_step(model, data, self._default_pose + applied * cfg.action_scale)

    contact = self._foot_contact(data)
    contact_filt = contact | info["last_contact"]
    first_contact = (info["feet_air_time"] > 0.0) & contact_filt
    air_time = info["feet_air_time"] + self.dt

    done = self._fallen(data)
    terms = self._reward_terms(data, info, action, air_time, first_contact, done)
    tracking = self._tracking_errors(data, info["command"])
    scales = cfg.reward_config.scales
    scaled = {name: terms[name] * scales.get(name, 0.0) for name in REWARD_TERMS}
    reward = jnp.clip(sum(scaled.values()) * self.dt, 0.0, 1e4)

    step_count = info["step"] + 1
    resample = (step_count % cfg.command_config.resample_steps) == 0
    info.update({
        "rng": rng,
        "step": step_count,
        "command": jnp.where(resample, self.sample_command(k_cmd), info["command"]),
        "last_action": action,
        "action_history": history,
        "push_countdown": countdown,
        "feet_air_time": air_time * ~contact,
        "last_contact": contact,
    })
    obs = self._observe(data, info, contact, k_obs)
    metrics = {f"reward/{name}": value for name, value in scaled.items()}
    metrics.update(tracking)
    return State(data, obs, reward, done, metrics, info)

  # -- pieces -----------------------------------------------------------------------------------

  def _foot_contact(self, data: mjx.Data) -> jax.Array:
    """bool[4]: foot sphere within `contact_threshold` of the (flat) floor."""
    clearance = data.geom_xpos[self._feet, 2] - self._foot_radius
    return clearance < self.config.contact_threshold

  def _fallen(self, data: mjx.Data) -> jax.Array:
    up_z = _rotate_inv(data.qpos[3:7], jnp.array([0.0, 0.0, 1.0]))[2]
    fallen = (up_z < 0.0) | (data.qpos[2] < self.config.termination.min_height)
    bad = ~jnp.all(jnp.isfinite(data.qpos)) | ~jnp.all(jnp.isfinite(data.qvel))
    return (fallen | bad).astype(jnp.float32)

  def _proprioception(self, data: mjx.Data) -> dict[str, jax.Array]:
    quat = data.qpos[3:7]
    return {
        "linvel": _rotate_inv(quat, data.qvel[0:3]),   # free joint: linear velocity in world frame
        "gyro": data.qvel[3:6],                         # angular velocity, already in body frame
        "gravity": _rotate_inv(quat, jnp.array([0.0, 0.0, -1.0])),
        "joint_pos": data.qpos[7:] - self._default_pose,
        "joint_vel": data.qvel[6:],
    }

  def _observe(self, data: mjx.Data, info: dict, contact: jax.Array,
               rng: jax.Array) -> dict[str, jax.Array]:
    clean = self._proprioception(data)
    noise = self.config.noise_config
    keys = jax.random.split(rng, len(clean) + 1)
    noisy = {}
    for key, (name, value) in zip(keys[:-1], clean.items()):
      u = jax.random.uniform(key, value.shape, minval=-1.0, maxval=1.0)
      noisy[name] = value + u * noise.level * noise.scales[name]
    if self.config.randomization.enabled:  # DR: Gaussian joint-angle noise with a per-env std
      sigma = info["dr"]["joint_pos_noise"]
      noisy["joint_pos"] = noisy["joint_pos"] + sigma * jax.random.normal(keys[-1], (12,))

    def assemble(parts):
      return jnp.concatenate([parts["linvel"], parts["gyro"], parts["gravity"], parts["joint_pos"],
                              parts["joint_vel"], info["last_action"], info["command"]])

    draws = info["dr"]
    privileged = jnp.concatenate([
        assemble(clean), data.actuator_force, contact.astype(jnp.float32), info["feet_air_time"],
        data.qpos[2:3], draws["floor_friction"][None], draws["torso_mass_offset"][None],
        draws["torso_com_offset"], draws["kp_scale"],
        draws["action_latency"].astype(jnp.float32)[None]])
    return {"state": assemble(noisy), "privileged_state": privileged}

  def _tracking_errors(self, data: mjx.Data, command: jax.Array) -> dict[str, jax.Array]:
    """Velocity-tracking errors against the command: |v_xy − cmd_xy| [m/s], |ω_z − cmd_yaw| [rad/s]."""
    p = self._proprioception(data)
    return {"tracking/lin_vel_error": jnp.linalg.norm(command[:2] - p["linvel"][:2]),
            "tracking/ang_vel_error": jnp.abs(command[2] - p["gyro"][2])}

  def _reward_terms(self, data: mjx.Data, info: dict, action: jax.Array, air_time: jax.Array,
                    first_contact: jax.Array, done: jax.Array) -> dict[str, jax.Array]:
    """Unscaled reward terms (Playground Go1 joystick forms), each f32[]."""
    rc = self.config.reward_config
    p = self._proprioception(data)
    cmd = info["command"]
    world_angvel = data.cvel[self._torso, 0:3]  # com-based spatial velocity: angular part (world)
    lin_err = jnp.sum(jnp.square(cmd[:2] - p["linvel"][:2]))
    yaw_err = jnp.square(cmd[2] - p["gyro"][2])
    weights = jnp.tile(jnp.asarray(rc.pose_weights, jnp.float32), 4)
    torques = data.actuator_force
    moving = jnp.linalg.norm(cmd) > 0.05
    return {
        "tracking_lin_vel": jnp.exp(-lin_err / rc.tracking_sigma),
        "tracking_ang_vel": jnp.exp(-yaw_err / rc.tracking_sigma),
        "lin_vel_z": jnp.square(p["linvel"][2]),
        "ang_vel_xy": jnp.sum(jnp.square(world_angvel[:2])),
        "orientation": jnp.sum(jnp.square(p["gravity"][:2])),
        "base_height": jnp.square(data.qpos[2] - rc.base_height_target),
        "pose": jnp.exp(-jnp.sum(weights * jnp.square(p["joint_pos"]))),
        "torques": jnp.sqrt(jnp.sum(jnp.square(torques))) + jnp.sum(jnp.abs(torques)),
        "action_rate": jnp.sum(jnp.square(action - info["last_action"])),
        "feet_air_time": jnp.sum((air_time - rc.feet_air_time_target) * first_contact) * moving,
        "termination": done,
    }
