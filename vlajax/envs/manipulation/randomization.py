"""Domain randomization (DR) for the tabletop arm tasks, on the generic mechanism of
`vlajax.envs.randomization`: ranges `{field: f32[2]}` in `State.info["dr_ranges"]`, draws in
`State.info["dr"]` (re-drawn at every reset, so ADR can change the ranges between resets), applied
as a pure `model.replace(...)` of `MODEL_FIELDS` inside the traced step.

Fields (config section `randomization`; every range is (low, high), uniform unless said):

  field              unit / meaning                                    default       source
  object_mass_scale  x each free object's mass and inertia, per object U(0.5, 1.5)   seed 001 s16
  object_friction    sliding coefficient of each object's pairs with   U(0.6, 1.4)   seed 001 s16
                     the pads and the hand, absolute, per object                     (0.5-1.5)
  table_friction     sliding coefficient of the object-table pairs,    U(0.4, 1.2)   seed 001 s16
                     absolute, one per env                                           (0.3-1.2)
  object_size_scale  x each object's half-size (4 cm cube: 3.6-4.4);   U(0.9, 1.1)   ours
                     mass x s^3, inertia x s^5 (same density); the
                     reset puts the centre at the scaled half-size
  object_xy_offset   m added to each object's initial x and y          U(-.01, .01)  ours
  object_yaw_offset  rad added to each object's initial yaw            U(-0.1, 0.1)  ours
  kp_scale           x position-actuator Kp, per actuator (7 arm       U(0.85, 1.15) seed 001 s16
                     servos, 2 fingers; gainprm[0] and biasprm[1])                   (+-15%, sysid)
  action_latency     control steps between the commanded actuator      {0, 1, 2}     seed 001 s16
                     targets and the ones the motors see (integer)                   (0-3 steps)
  joint_pos_noise    std of Gaussian noise on the observed arm joint   U(0, 0.005)   seed 001 s16
                     angles, rad, per env (obs["state"] only)

Nominal values: the model's own (friction 1.0 for every pair of the arm scenes, scales 1, offsets,
latency and noise 0); `nominal_ranges` reproduces the un-randomized env exactly (bit for bit: the
draws enter as `x * 1`, `x + 0` and `set(nominal)`). `max_action_latency` is the static length of
the actuator-target buffer (`info["ctrl_history"]` f32[L+1, nu]).

What is not randomized: the cube-cube pairs of `tabletop_language` (nominal friction), joint
damping / armature of the arm, the velocity gains kv, gravity. `table_friction` sets both tangent
coefficients of a pair (condim 3); torsional and rolling friction stay nominal.

MuJoCo Playground's Panda and Aloha manipulation tasks train without model randomization (its
`randomize.py` files are for the locomotion and in-hand tasks); the ranges above follow the
Franka worked example and the DR table of seed 001 section 16 ("Sim-to-real"), narrowed where the
scripted experts must still succeed (measured in tests/test_envs_manipulation_dr.py).

Automatic DR (`vlajax.envs.adr`; bounds and steps in `default_adr_config`): from the nominal
ranges (`adr.initial_ranges="nominal"`, the arm presets' setting) or from the config's, each field
widens by its step per successful update, through the defaults above, up to the seed 001 section 16
table's ranges (friction 0.3-1.5, Kp +-30%, latency 0-3 steps) and a little past the config's for
the rest (mass x 0.3-2, size x 0.8-1.2, 3 cm / 0.3 rad of pose jitter, 0.01 rad of joint noise).

Visual DR (`visual_overrides`) gives per-env renderer overrides (camera pose, lights, object and
table colours) for `render.BatchRenderer.render(state, overrides=...)`; see its docstring.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import mujoco
import numpy as np
from mujoco import mjx

from vlajax.envs import backend
from vlajax.envs import randomization as dr_lib

# Order matters only for key splitting (each field gets its own key).
FIELDS = ("object_mass_scale", "object_friction", "table_friction", "object_size_scale",
          "object_xy_offset", "object_yaw_offset", "kp_scale", "action_latency", "joint_pos_noise")

MODEL_FIELDS = ("body_mass", "body_inertia", "body_subtreemass", "body_invweight0",
                "dof_invweight0", "geom_size", "geom_rbound", "geom_aabb", "pair_friction",
                "actuator_gainprm", "actuator_biasprm")

GRIPPER_GEOMS = ("pad_left", "pad_right", "hand")
TABLE_GEOM = "table"

Ranges = dr_lib.Ranges
Draws = dr_lib.Draws


def default_config() -> ml_collections.ConfigDict:
  """The `randomization` section of an arm task's config (units in the module docstring)."""
  return ml_collections.ConfigDict({
      "enabled": True,
      "max_action_latency": 3,       # static buffer length; action_latency high must be <= this
      "object_mass_scale": (0.5, 1.5),
      "object_friction": (0.6, 1.4),
      "table_friction": (0.4, 1.2),
      "object_size_scale": (0.9, 1.1),
      "object_xy_offset": (-0.01, 0.01),
      "object_yaw_offset": (-0.1, 0.1),
      "kp_scale": (0.85, 1.15),
      "action_latency": (0.0, 2.0),
      "joint_pos_noise": (0.0, 0.005),
  })


def default_adr_config() -> ml_collections.ConfigDict:
  """Automatic-DR bounds and steps of the arm's fields (the env's `default_adr_config()`): each
  bound contains the nominal value and the default range of `default_config()`; a step moves each
  end of a range by about a tenth of the way from the nominal to the default range's end (latency
  by one control step)."""
  return ml_collections.ConfigDict({
      "bounds": {
          "object_mass_scale": (0.3, 2.0), "object_friction": (0.3, 1.5),
          "table_friction": (0.3, 1.5), "object_size_scale": (0.8, 1.2),
          "object_xy_offset": (-0.03, 0.03), "object_yaw_offset": (-0.3, 0.3),
          "kp_scale": (0.7, 1.3), "action_latency": (0.0, 3.0), "joint_pos_noise": (0.0, 0.01),
      },
      "steps": {
          "object_mass_scale": 0.05, "object_friction": 0.04, "table_friction": 0.05,
          "object_size_scale": 0.01, "object_xy_offset": 0.001, "object_yaw_offset": 0.01,
          "kp_scale": 0.015, "action_latency": 1.0, "joint_pos_noise": 0.0005,
      },
  })


# -- what DR touches in the model ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Targets:
  """Static indices and nominal values of the arm scene's DR targets (numpy, not traced)."""
  object_bodies: np.ndarray    # i32[n] body of each free object
  object_geoms: np.ndarray     # i32[n] its (single) collision geom
  object_dofs: np.ndarray      # i32[n] its free joint's first dof
  object_armature: np.ndarray  # f32[n] armature of its free joint
  nominal_half: np.ndarray     # f32[n] nominal half-height (geom_size[:, 2], m)
  grip_pairs: np.ndarray       # i32[n, k] contact pairs object-{pads, hand}
  table_pairs: np.ndarray      # i32[n] contact pair object-table
  subtree: np.ndarray          # f32[nbody, nbody], `randomization.subtree_matrix`
  nominal_object_friction: float
  nominal_table_friction: float
  num_actuators: int
  max_action_latency: int

  @classmethod
  def from_model(cls, mj_model: mujoco.MjModel, objects: Sequence[str],
                 max_action_latency: int = 3) -> "Targets":
    """`objects`: the free joints of the scene's objects (each on a body with one geom)."""
    bodies, geoms, dofs, grip, table = [], [], [], [], []
    for name in objects:
      joint = mj_model.joint(name)
      body = int(mj_model.jnt_bodyid[joint.id])
      own = np.flatnonzero(mj_model.geom_bodyid == body)
      if own.size != 1:
        raise ValueError(f"DR object '{name}' must have exactly one geom, has {own.size}")
      bodies.append(body)
      geoms.append(int(own[0]))
      dofs.append(int(joint.dofadr[0]))
      grip.append(_pairs_with(mj_model, int(own[0]), GRIPPER_GEOMS, name))
      table.append(_pairs_with(mj_model, int(own[0]), (TABLE_GEOM,), name)[0])
    grip, table = np.asarray(grip, np.int32), np.asarray(table, np.int32)
    return cls(object_bodies=np.asarray(bodies, np.int32), object_geoms=np.asarray(geoms, np.int32),
               object_dofs=np.asarray(dofs, np.int32),
               object_armature=np.asarray(mj_model.dof_armature[dofs], np.float32),
               nominal_half=np.asarray(mj_model.geom_size[geoms, 2], np.float32),
               grip_pairs=grip, table_pairs=table, subtree=dr_lib.subtree_matrix(mj_model),
               nominal_object_friction=_uniform_friction(mj_model, grip, "object_friction"),
               nominal_table_friction=_uniform_friction(mj_model, table, "table_friction"),
               num_actuators=int(mj_model.nu), max_action_latency=int(max_action_latency))

  @property
  def num_objects(self) -> int:
    return int(self.object_bodies.shape[0])


def _pairs_with(mj_model: mujoco.MjModel, geom: int, others: Sequence[str], name: str) -> list[int]:
  """Ids of the contact pairs between `geom` and each geom named in `others`, in that order."""
  ids = []
  for other in others:
    other_id = mj_model.geom(other).id
    found = [p for p in range(mj_model.npair)
             if {int(mj_model.pair_geom1[p]), int(mj_model.pair_geom2[p])} == {geom, other_id}]
    if not found:
      raise ValueError(f"DR object '{name}' has no contact pair with geom '{other}'")
    ids.append(found[0])
  return ids


def _uniform_friction(mj_model: mujoco.MjModel, pairs: np.ndarray, field: str) -> float:
  values = mj_model.pair_friction[np.asarray(pairs).reshape(-1), 0]
  if not np.all(values == values[0]):
    raise ValueError(f"DR field '{field}' sets one coefficient, but the model's pairs have "
                     f"different nominal values {sorted(set(values.tolist()))}")
  return float(values[0])


# -- ranges ------------------------------------------------------------------------------------

def ranges_from_config(cfg: ml_collections.ConfigDict) -> Ranges:
  """`{field: f32[2]}` from a `randomization` section; errors name the field."""
  unknown = sorted(set(cfg) - set(FIELDS) - {"enabled", "max_action_latency"})
  if unknown:
    raise KeyError(f"randomization: unknown field(s) {unknown} (fields: {list(FIELDS)})")
  ranges = dr_lib.config_ranges(cfg, FIELDS)
  dr_lib.check_latency_range(ranges, cfg.max_action_latency)
  for field in ("object_mass_scale", "object_size_scale"):
    if ranges[field][0] <= 0:
      raise ValueError(f"randomization.{field} must be positive, got {tuple(cfg[field])}")
  for field in ("object_friction", "table_friction", "joint_pos_noise", "kp_scale"):
    if ranges[field][0] < 0:
      raise ValueError(f"randomization.{field} must be >= 0, got {tuple(cfg[field])}")
  return ranges


def check_ranges(ranges: Ranges) -> None:
  """Raises naming the field for a missing, unknown or mis-shaped range of one env."""
  dr_lib.check_ranges(ranges, FIELDS)


def nominal_ranges(targets: Targets) -> Ranges:
  """Ranges whose draws reproduce the un-randomized env exactly."""
  point = lambda v: jnp.array([v, v], jnp.float32)
  return {"object_mass_scale": point(1.0),
          "object_friction": point(targets.nominal_object_friction),
          "table_friction": point(targets.nominal_table_friction), "object_size_scale": point(1.0),
          "object_xy_offset": point(0.0), "object_yaw_offset": point(0.0), "kp_scale": point(1.0),
          "action_latency": point(0.0), "joint_pos_noise": point(0.0)}


# -- draws -------------------------------------------------------------------------------------

def sample(rng: jax.Array, ranges: Ranges, targets: Targets) -> Draws:
  """One env's draws: per object f32[n] (xy offset f32[n, 2]), `table_friction` f32[],
  `kp_scale` f32[nu], `action_latency` i32[], `joint_pos_noise` f32[]."""
  keys = dict(zip(FIELDS, jax.random.split(rng, len(FIELDS))))
  n, nu = targets.num_objects, targets.num_actuators
  per_object = lambda f, shape=(n,): dr_lib.uniform(keys[f], ranges[f], shape)
  return {
      "object_mass_scale": per_object("object_mass_scale"),
      "object_friction": per_object("object_friction"),
      "table_friction": dr_lib.uniform(keys["table_friction"], ranges["table_friction"]),
      "object_size_scale": per_object("object_size_scale"),
      "object_xy_offset": per_object("object_xy_offset", (n, 2)),
      "object_yaw_offset": per_object("object_yaw_offset"),
      "kp_scale": dr_lib.uniform(keys["kp_scale"], ranges["kp_scale"], (nu,)),
      "action_latency": dr_lib.sample_latency(keys["action_latency"], ranges["action_latency"],
                                              targets.max_action_latency),
      "joint_pos_noise": dr_lib.uniform(keys["joint_pos_noise"], ranges["joint_pos_noise"]),
  }


def nominal_draws(targets: Targets) -> Draws:
  """Draws that leave the env as built (DR disabled; same state layout)."""
  n, nu = targets.num_objects, targets.num_actuators
  return {
      "object_mass_scale": jnp.ones((n,)),
      "object_friction": jnp.full((n,), targets.nominal_object_friction, jnp.float32),
      "table_friction": jnp.asarray(targets.nominal_table_friction, jnp.float32),
      "object_size_scale": jnp.ones((n,)), "object_xy_offset": jnp.zeros((n, 2)),
      "object_yaw_offset": jnp.zeros((n,)), "kp_scale": jnp.ones((nu,)),
      "action_latency": jnp.zeros((), jnp.int32), "joint_pos_noise": jnp.zeros(()),
  }


# -- applying draws ----------------------------------------------------------------------------

def _reweight(invweight: jax.Array, ratio: jax.Array, armature: jax.Array) -> jax.Array:
  """Inverse weights after the link part of the effective inertia `1 / w - armature` scales by
  `ratio` (exact for a free body; `invweight` unchanged where ratio is 1)."""
  link = jnp.maximum(1.0 / invweight - armature, 0.0)
  return jnp.where(ratio == 1.0, invweight, 1.0 / (link * ratio + armature))


def model_fields(model: mjx.Model, draws: Draws, targets: Targets) -> dict[str, jax.Array]:
  """The randomized model fields (`MODEL_FIELDS`) from `model`'s nominal values.

  Object masses scale by `mass_scale * size_scale^3` and inertias by that times `size_scale^2`;
  `body_subtreemass` changes by the mass differences; `body_invweight0` / `dof_invweight0` of each
  free object (1 / mass for the translational, 1 / inertia for the rotational part, as MuJoCo's
  `mj_setConst` computes them at qpos0) follow. The object geom's size, bounding sphere and box
  scale with `size_scale`.
  """
  t = targets
  bodies, geoms = t.object_bodies, t.object_geoms
  size = draws["object_size_scale"]
  mass_ratio = draws["object_mass_scale"] * size ** 3
  inertia_ratio = mass_ratio * size ** 2
  mass = model.body_mass.at[bodies].multiply(mass_ratio)
  subtree = model.body_subtreemass + jnp.asarray(t.subtree) @ (mass - model.body_mass)
  armature = jnp.asarray(t.object_armature)
  body_w = model.body_invweight0
  body_w = body_w.at[bodies, 0].set(_reweight(body_w[bodies, 0], mass_ratio, armature))
  body_w = body_w.at[bodies, 1].set(_reweight(body_w[bodies, 1], inertia_ratio, armature))
  trans = t.object_dofs[:, None] + np.arange(3)
  dof_w = model.dof_invweight0
  dof_w = dof_w.at[trans].set(_reweight(dof_w[trans], mass_ratio[:, None], armature[:, None]))
  dof_w = dof_w.at[trans + 3].set(_reweight(dof_w[trans + 3], inertia_ratio[:, None],
                                            armature[:, None]))
  friction = model.pair_friction
  object_mu = jnp.broadcast_to(draws["object_friction"][:, None], t.grip_pairs.shape)
  friction = friction.at[t.grip_pairs, 0].set(object_mu).at[t.grip_pairs, 1].set(object_mu)
  friction = friction.at[t.table_pairs, 0].set(draws["table_friction"])
  friction = friction.at[t.table_pairs, 1].set(draws["table_friction"])
  return {
      "body_mass": mass,
      "body_inertia": model.body_inertia.at[bodies].multiply(inertia_ratio[:, None]),
      "body_subtreemass": subtree,
      "body_invweight0": body_w,
      "dof_invweight0": dof_w,
      "geom_size": model.geom_size.at[geoms].multiply(size[:, None]),
      "geom_rbound": model.geom_rbound.at[geoms].multiply(size),
      "geom_aabb": model.geom_aabb.at[geoms].multiply(size[:, None]),
      "pair_friction": friction,
      **dr_lib.position_gain_fields(model, draws["kp_scale"]),
  }


def apply(model: mjx.Model, draws: Draws, targets: Targets) -> mjx.Model:
  """`model` with the draws applied: a pure `replace` of `MODEL_FIELDS` only."""
  fields = model_fields(model, draws, targets)
  backend.check_batchable(model, fields)
  return model.replace(**fields)


def place_objects(poses: jax.Array, draws: Draws, targets: Targets) -> jax.Array:
  """Initial object poses f32[n, 7] (position, quaternion; resting on the table at the nominal
  size) with the draws' xy offsets, extra yaw (about the world z axis) and the centre raised or
  lowered to the scaled half-size, so each object still rests on the table."""
  half = jnp.asarray(targets.nominal_half)
  lift = (draws["object_size_scale"] - 1.0) * half
  pos = poses[:, :3] + jnp.concatenate([draws["object_xy_offset"], lift[:, None]], axis=-1)
  yaw = draws["object_yaw_offset"]
  turn = jnp.stack([jnp.cos(yaw / 2), jnp.zeros_like(yaw), jnp.zeros_like(yaw), jnp.sin(yaw / 2)],
                   axis=-1)
  return jnp.concatenate([pos, dr_lib.quat_mul(turn, poses[:, 3:])], axis=-1)


def noisy_joint_angles(angles: jax.Array, draws: Draws, rng: jax.Array) -> jax.Array:
  """`angles` f32[J] plus Gaussian noise with the drawn std (`joint_pos_noise`, rad)."""
  return angles + draws["joint_pos_noise"] * jax.random.normal(rng, angles.shape)


# -- visual DR (renderer overrides) ------------------------------------------------------------

def default_visual_config() -> ml_collections.ConfigDict:
  """Ranges for `visual_overrides`: the camera / light ranges of
  `randomization.default_camera_light_config` plus colour scales (x per RGB channel)."""
  cfg = dr_lib.default_camera_light_config()
  cfg.object_rgb_scale = (0.85, 1.15)   # small: the language tasks name objects by colour
  cfg.table_rgb_scale = (0.6, 1.0)    # darker / tinted only: the table material is white
  return cfg


@dataclasses.dataclass(frozen=True)
class VisualTargets:
  """Geoms and materials `visual_overrides` recolours (numpy ids)."""
  object_geoms: np.ndarray   # i32[n]
  table_geom: int
  table_material: int        # -1 when the table has no material

  @classmethod
  def from_model(cls, mj_model: mujoco.MjModel, objects: Sequence[str]) -> "VisualTargets":
    bodies = [mj_model.jnt_bodyid[mj_model.joint(j).id] for j in objects]
    geoms = [int(np.flatnonzero(mj_model.geom_bodyid == b)[0]) for b in bodies]
    table = mj_model.geom(TABLE_GEOM).id
    return cls(object_geoms=np.asarray(geoms, np.int32), table_geom=int(table),
               table_material=int(mj_model.geom_matid[table]))


def visual_overrides(model: mjx.Model, rng: jax.Array, targets: VisualTargets,
                     cfg: ml_collections.ConfigDict | None = None) -> dict[str, jax.Array]:
  """One env's renderer overrides: `cam_pos` f32[ncam, 3], `cam_quat` f32[ncam, 4], `light_pos`
  f32[nlight, 3], `light_diffuse` f32[nlight, 3] (`randomization.camera_light_fields`),
  `geom_rgba` f32[ngeom, 4] (objects and table tinted) and `mat_rgba` f32[nmat, 4] (the table's
  material tinted). vmap over keys for a batch; pass to `BatchRenderer.render(overrides=...)`."""
  cfg = default_visual_config() if cfg is None else cfg
  k_cam, k_obj, k_table = jax.random.split(rng, 3)
  fields = dr_lib.camera_light_fields(model, k_cam, cfg)
  n = targets.object_geoms.shape[0]
  obj = dr_lib.uniform(k_obj, jnp.asarray(cfg.object_rgb_scale), (n, 3))
  table = dr_lib.uniform(k_table, jnp.asarray(cfg.table_rgb_scale), (3,))
  rgba = model.geom_rgba
  rgba = rgba.at[targets.object_geoms, :3].multiply(obj)
  rgba = rgba.at[targets.table_geom, :3].multiply(table)
  fields["geom_rgba"] = jnp.clip(rgba, 0.0, 1.0)
  if targets.table_material >= 0:
    mat = model.mat_rgba.at[targets.table_material, :3].multiply(table)
    fields["mat_rgba"] = jnp.clip(mat, 0.0, 1.0)
  return fields
