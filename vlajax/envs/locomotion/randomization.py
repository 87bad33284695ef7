"""Domain randomization of the quadruped (`quadruped_joystick`): fields, draws, model update, pushes.

The generic mechanism (range checks, latency buffer, camera/light DR) is `vlajax.envs.randomization`.

The flow, for one (unbatched) env:

  ranges = ranges_from_config(config.randomization)     # {field: f32[2]} = (low, high)
  draws  = sample(rng, ranges, targets)                 # at every reset, from the env's own key
  model  = apply(mjx_model, draws, targets)             # inside the traced step: model.replace(...)

`targets` (`Targets.from_model`) names the parts of the model DR touches (floor geom, torso body,
actuated dofs). Ranges travel in `State.info["dr_ranges"]` and draws in `State.info["dr"]`, so automatic
DR (`vlajax.envs.adr`) can change ranges between resets and every auto-reset re-draws from them.
Under `vmap`, `apply` gives a model in which only the randomized fields carry the batch axis: the
others are the unbatched constants of `mjx_model` (no Python-side model swap, nothing else
overwritten). Mass-derived constants (`body_subtreemass`, `body_inertia`, `body_invweight0`,
`dof_invweight0`) are updated with the masses.

Fields and default ranges (MuJoCo Playground Go1 `randomize.py`, seed 001 section 16 table, Isaac Lab):

  floor_friction       floor sliding friction, absolute              U(0.4, 1.0)      Playground
  link_mass_scale      every link's mass (and inertia), x            U(0.9, 1.1)      Playground
  torso_mass_offset    torso mass, + kg                              U(-1, 1)         Playground
  torso_com_offset     torso centre of mass, + m per axis            U(-0.05, 0.05)   Playground
  joint_damping_scale  passive joint damping, x per joint            U(0.7, 1.3)      seed table (+-30%)
  armature_scale       joint armature, x per joint                   U(1.0, 1.05)     Playground
  frictionloss_scale   joint dry friction, x per joint               U(0.9, 1.1)      Playground
  kp_scale             actuator position gain Kp, x per actuator     U(0.7, 1.3)      seed (420-780 / 600)
  action_latency       control steps between policy and motors      {0..3}           seed table
  joint_pos_noise      std of Gaussian noise on observed joint angle U(0, 0.005) rad  seed table
  push_velocity        trunk velocity kick magnitude, m/s            U(0, 0.5)        Isaac Lab
  push_interval        seconds between kicks                         U(10, 15)        Isaac Lab

`action_latency` is drawn as an integer uniformly in {low, ..., high}; its buffer length is the static
`max_action_latency`. Pushes and observation noise are applied by the env's step (helpers below).
Automatic DR (`vlajax.envs.adr`) widens these ranges up to the bounds of `default_adr_config`.

Camera pose and lighting (for camera tasks) have their own function, `perturb_camera_and_lights`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import mujoco
import numpy as np
from mujoco import mjx

from vlajax.envs import backend
from vlajax.envs import randomization as generic
from vlajax.envs.randomization import Draws, Ranges, position_gain_fields, sample_latency
from vlajax.envs.randomization import uniform as _uniform

# Order matters only for key splitting: each field gets its own key, whatever the other ranges are.
FIELDS = ("floor_friction", "link_mass_scale", "torso_mass_offset", "torso_com_offset",
          "joint_damping_scale", "armature_scale", "frictionloss_scale", "kp_scale",
          "action_latency", "joint_pos_noise", "push_velocity", "push_interval")

# Model fields written by `apply` (and batched by `brax_randomization_fn`).
MODEL_FIELDS = ("geom_friction", "body_mass", "body_inertia", "body_ipos", "body_subtreemass",
                "body_invweight0", "dof_invweight0", "dof_damping", "dof_armature",
                "dof_frictionloss", "actuator_gainprm", "actuator_biasprm")

def default_config() -> ml_collections.ConfigDict:
  """The `randomization` section of a randomized env's config."""
  return ml_collections.ConfigDict({
      "enabled": True,
      "max_action_latency": 3,          # static buffer length; action_latency high must be <= this
      "floor_friction": (0.4, 1.0),
      "link_mass_scale": (0.9, 1.1),
      "torso_mass_offset": (-1.0, 1.0),
      "torso_com_offset": (-0.05, 0.05),
      "joint_damping_scale": (0.7, 1.3),
      "armature_scale": (1.0, 1.05),
      "frictionloss_scale": (0.9, 1.1),
      "kp_scale": (0.7, 1.3),
      "action_latency": (0.0, 3.0),
      "joint_pos_noise": (0.0, 0.005),
      "push_velocity": (0.0, 0.5),
      "push_interval": (10.0, 15.0),
  })


def default_adr_config() -> ml_collections.ConfigDict:
  """Automatic-DR bounds and steps of the quadruped's fields (`vlajax.envs.adr`; the env's
  `default_adr_config()`). ADR starts from the config's ranges above and widens each field by its
  step per successful update, up to the bound (roughly the seed 001 section 16 table's ranges);
  `push_interval` stays fixed."""
  return ml_collections.ConfigDict({
      "bounds": {
          "floor_friction": (0.1, 1.5), "link_mass_scale": (0.5, 1.5),
          "torso_mass_offset": (-2.0, 3.0), "torso_com_offset": (-0.1, 0.1),
          "joint_damping_scale": (0.5, 2.0), "armature_scale": (0.8, 1.5),
          "frictionloss_scale": (0.5, 2.0), "kp_scale": (0.5, 1.5),
          "action_latency": (0.0, 3.0), "joint_pos_noise": (0.0, 0.02),
          "push_velocity": (0.0, 1.5),
      },
      "steps": {
          "floor_friction": 0.05, "link_mass_scale": 0.02, "torso_mass_offset": 0.2,
          "torso_com_offset": 0.005, "joint_damping_scale": 0.05, "armature_scale": 0.02,
          "frictionloss_scale": 0.05, "kp_scale": 0.02, "action_latency": 1.0,
          "joint_pos_noise": 0.001, "push_velocity": 0.1,
      },
  })


def nominal_ranges(targets: "Targets") -> Ranges:
  """Ranges whose draws reproduce the unrandomized model (scales 1, offsets 0, no latency, noise or
  pushes). ADR starts here and never shrinks below it."""
  point = lambda v: jnp.array([v, v], jnp.float32)
  return {"floor_friction": point(targets.nominal_floor_friction), "link_mass_scale": point(1.0),
          "torso_mass_offset": point(0.0), "torso_com_offset": point(0.0),
          "joint_damping_scale": point(1.0), "armature_scale": point(1.0),
          "frictionloss_scale": point(1.0), "kp_scale": point(1.0), "action_latency": point(0.0),
          "joint_pos_noise": point(0.0), "push_velocity": point(0.0),
          "push_interval": jnp.array([10.0, 15.0], jnp.float32)}


# -- what DR touches in a model --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Targets:
  """Static indices and nominal values of the model parts DR touches (numpy, not traced)."""
  floor_geom: int
  torso_body: int
  dofs: np.ndarray           # i32[J] actuated dof ids (damping/armature/frictionloss scales)
  subtree: np.ndarray        # f32[nbody, nbody]: subtree[b, c] = 1 if c is in b's subtree
  dof_body: np.ndarray       # i32[nv] body of each dof
  nominal_floor_friction: float
  max_action_latency: int

  @classmethod
  def from_model(cls, mj_model: mujoco.MjModel, floor_geom: str = "floor",
                 torso_body: str = "trunk", max_action_latency: int = 3) -> "Targets":
    geom = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_GEOM, floor_geom)
    body = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_BODY, torso_body)
    if geom < 0:
      raise KeyError(f"DR target geom '{floor_geom}' not found in the model")
    if body < 0:
      raise KeyError(f"DR target body '{torso_body}' not found in the model")
    dofs = mj_model.jnt_dofadr[mj_model.actuator_trnid[:, 0]]
    subtree = generic.subtree_matrix(mj_model)
    return cls(floor_geom=int(geom), torso_body=int(body), dofs=np.asarray(dofs, np.int32),
               subtree=subtree, dof_body=np.asarray(mj_model.dof_bodyid, np.int32),
               nominal_floor_friction=float(mj_model.geom_friction[geom, 0]),
               max_action_latency=int(max_action_latency))

  @property
  def num_joints(self) -> int:
    return int(self.dofs.shape[0])

  @property
  def num_bodies(self) -> int:
    return int(self.subtree.shape[0])


# -- ranges ----------------------------------------------------------------------------------------

def ranges_from_config(cfg: ml_collections.ConfigDict) -> Ranges:
  """`{field: f32[2]}` from a `randomization` config section; checks every range."""
  ranges = generic.config_ranges(cfg, FIELDS)
  generic.check_latency_range(ranges, cfg.max_action_latency)
  if ranges["push_interval"][0] <= 0:
    raise ValueError(f"randomization.push_interval must be positive, got {tuple(cfg.push_interval)}")
  return ranges


def check_ranges(ranges: Ranges) -> None:
  """`generic.check_ranges` over the quadruped's `FIELDS`."""
  generic.check_ranges(ranges, FIELDS)


# -- draws -----------------------------------------------------------------------------------------

def sample(rng: jax.Array, ranges: Ranges, targets: Targets) -> Draws:
  """One env's DR parameters. Shapes: scalars f32[], per-joint f32[J], link_mass_scale f32[nbody],
  torso_com_offset f32[3], action_latency i32[]."""
  keys = dict(zip(FIELDS, jax.random.split(rng, len(FIELDS))))
  nj, nb = targets.num_joints, targets.num_bodies
  latency = sample_latency(keys["action_latency"], ranges["action_latency"],
                           targets.max_action_latency)
  return {
      "floor_friction": _uniform(keys["floor_friction"], ranges["floor_friction"]),
      "link_mass_scale": _uniform(keys["link_mass_scale"], ranges["link_mass_scale"], (nb,)),
      "torso_mass_offset": _uniform(keys["torso_mass_offset"], ranges["torso_mass_offset"]),
      "torso_com_offset": _uniform(keys["torso_com_offset"], ranges["torso_com_offset"], (3,)),
      "joint_damping_scale": _uniform(keys["joint_damping_scale"], ranges["joint_damping_scale"], (nj,)),
      "armature_scale": _uniform(keys["armature_scale"], ranges["armature_scale"], (nj,)),
      "frictionloss_scale": _uniform(keys["frictionloss_scale"], ranges["frictionloss_scale"], (nj,)),
      "kp_scale": _uniform(keys["kp_scale"], ranges["kp_scale"], (nj,)),
      "action_latency": latency,
      "joint_pos_noise": _uniform(keys["joint_pos_noise"], ranges["joint_pos_noise"]),
  }


def nominal_draws(targets: Targets) -> Draws:
  """Draws that leave the model as built (used when DR is disabled, so state shapes match)."""
  nj, nb = targets.num_joints, targets.num_bodies
  return {
      "floor_friction": jnp.asarray(targets.nominal_floor_friction, jnp.float32),
      "link_mass_scale": jnp.ones((nb,)), "torso_mass_offset": jnp.zeros(()),
      "torso_com_offset": jnp.zeros((3,)), "joint_damping_scale": jnp.ones((nj,)),
      "armature_scale": jnp.ones((nj,)), "frictionloss_scale": jnp.ones((nj,)),
      "kp_scale": jnp.ones((nj,)), "action_latency": jnp.zeros((), jnp.int32),
      "joint_pos_noise": jnp.zeros(()),
  }


# -- applying draws to the model -------------------------------------------------------------------

def model_fields(model: mjx.Model, draws: Draws, targets: Targets) -> dict[str, jax.Array]:
  """The randomized model fields (see `MODEL_FIELDS`) computed from `model`'s nominal values.

  Masses: `body_mass * link_mass_scale`, plus `torso_mass_offset` on the torso; each body's inertia
  scales with its mass (same shape, denser material). `body_subtreemass` is recomputed exactly.
  `body_invweight0` / `dof_invweight0` (constraint regularisation, computed by MuJoCo at qpos0) follow
  the masses: `body_invweight0` is divided by the ratio new/old subtree mass of its body, and each
  dof's effective inertia `1 / dof_invweight0` is split into a link part, scaled by that ratio, and
  its armature, replaced by the new armature. Exact when all masses and armatures scale together,
  first order otherwise (MuJoCo's `mj_setConst` is not traceable; see mujoco#1607).
  """
  t = targets
  mass0 = model.body_mass
  mass = (mass0 * draws["link_mass_scale"]).at[t.torso_body].add(draws["torso_mass_offset"])
  mass = jnp.maximum(mass, 0.0)
  ratio = jnp.where(mass0 > 0, mass / jnp.where(mass0 > 0, mass0, 1.0), 1.0)
  subtree0 = model.body_subtreemass
  subtree = jnp.asarray(t.subtree) @ mass
  subtree_ratio = jnp.where(subtree0 > 0, subtree / jnp.where(subtree0 > 0, subtree0, 1.0), 1.0)

  ipos = model.body_ipos.at[t.torso_body].add(draws["torso_com_offset"])
  friction = model.geom_friction.at[t.floor_geom, 0].set(draws["floor_friction"])

  def scaled(values, scale):
    return values.at[t.dofs].set(values[t.dofs] * scale)

  armature = scaled(model.dof_armature, draws["armature_scale"])
  # Effective inertia of each dof at qpos0, 1 / dof_invweight0, split into links + armature.
  w0 = model.dof_invweight0
  link_inertia = jnp.maximum(1.0 / jnp.where(w0 > 0, w0, 1.0) - model.dof_armature, 0.0)
  dof_invweight = jnp.where(w0 > 0, 1.0 / (link_inertia * subtree_ratio[t.dof_body] + armature), 0.0)
  return {
      "geom_friction": friction,
      "body_mass": mass,
      "body_inertia": model.body_inertia * ratio[:, None],
      "body_ipos": ipos,
      "body_subtreemass": subtree,
      "body_invweight0": model.body_invweight0 / subtree_ratio[:, None],
      "dof_invweight0": dof_invweight,
      "dof_damping": scaled(model.dof_damping, draws["joint_damping_scale"]),
      "dof_armature": armature,
      "dof_frictionloss": scaled(model.dof_frictionloss, draws["frictionloss_scale"]),
      **position_gain_fields(model, draws["kp_scale"]),
  }


def apply(model: mjx.Model, draws: Draws, targets: Targets) -> mjx.Model:
  """`model` with the draws applied: a pure `replace` of `MODEL_FIELDS` only."""
  fields = model_fields(model, draws, targets)
  backend.check_batchable(model, fields)
  return model.replace(**fields)


def brax_randomization_fn(targets: Targets, ranges: Ranges
                          ) -> Callable[[mjx.Model, jax.Array], tuple[mjx.Model, mjx.Model]]:
  """A brax-style `randomization_fn(sys, rng) -> (sys, in_axes)` drawing from `ranges`.

  `rng` is u32[B, 2] (one key per env). The returned model carries a leading batch axis B on
  `MODEL_FIELDS` only; `in_axes` is the matching tree (0 on those fields, None elsewhere). Latency,
  observation noise and pushes are not model fields, so brax's wrapper cannot express them: they
  stay in our env's step.
  """
  def randomize(sys: mjx.Model, rng: jax.Array):
    draws = jax.vmap(lambda k: sample(k, ranges, targets))(rng)
    fields = jax.vmap(lambda d: model_fields(sys, d, targets))(draws)
    backend.check_batchable(sys, fields)
    in_axes = jax.tree.map(lambda _: None, sys).replace(**{k: 0 for k in fields})
    return sys.replace(**fields), in_axes
  return randomize


# -- pushes (non-model DR used inside the env step) -----------------------------------------------

def push_interval_steps(rng: jax.Array, ranges: Ranges, ctrl_dt: float) -> jax.Array:
  """Control steps until the next push, i32[] >= 1, from `push_interval` seconds."""
  seconds = _uniform(rng, ranges["push_interval"])
  return jnp.maximum(jnp.round(seconds / ctrl_dt), 1).astype(jnp.int32)


def maybe_push(rng: jax.Array, qvel: jax.Array, countdown: jax.Array, ranges: Ranges,
               ctrl_dt: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Counts down to the next push; when due, adds a horizontal velocity kick to the free root.

  qvel: f32[nv] (root linear velocity in qvel[0:2], world frame). Returns (qvel, countdown, kick f32[2]).
  """
  k_mag, k_dir, k_next = jax.random.split(rng, 3)
  countdown = countdown - 1
  due = countdown <= 0
  angle = jax.random.uniform(k_dir, (), minval=-jnp.pi, maxval=jnp.pi)
  magnitude = _uniform(k_mag, ranges["push_velocity"])
  kick = jnp.where(due, magnitude, 0.0) * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
  qvel = qvel.at[0:2].add(kick)
  countdown = jnp.where(due, push_interval_steps(k_next, ranges, ctrl_dt), countdown)
  return qvel, countdown, kick
