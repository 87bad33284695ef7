"""Domain randomization (DR), the generic mechanism: per-env draws kept in the env state, applied as
a pure model update.

Every randomized task (`locomotion/randomization.py`, `manipulation/randomization.py`) follows one
flow, for one (unbatched) env:

  ranges = <task>.ranges_from_config(config.randomization)   # {field: f32[2]} = (low, high)
  draws  = <task>.sample(rng, ranges, targets)               # at every reset, from the env's own key
  model  = <task>.apply(mjx_model, draws, targets)           # inside the traced step: model.replace(...)

Ranges travel in `State.info["dr_ranges"]` and draws in `State.info["dr"]`, so automatic DR
(`vlajax.envs.adr`) can change ranges between resets and every auto-reset re-draws from them. Under
`vmap`, `apply` gives a model in which only the randomized fields carry the batch axis.

This module holds what the tasks share: range parsing and checks (`config_ranges`,
`check_ranges`, `check_latency_range`), draws (`uniform`, `sample_latency`), the body-subtree
matrix for mass-derived constants, actuator-gain fields, the action-latency buffer
(`push_history`, `delayed_action`), and camera pose / lighting perturbation for camera tasks
(`camera_light_fields`, `perturb_camera_and_lights`).

Backends: the same draws work under `impl="jax"` and `impl="warp"`. MuJoCo Warp keeps a per-world
copy of every model field the tasks write (and `cam_pos`, `cam_quat`, `light_pos`,
`light_diffuse`), so a batched `model.replace` runs one draw per world. Writing a field Warp cannot
batch (e.g. integer topology such as `geom_type`) raises a ValueError naming it
(`vlajax.envs.backend.check_batchable`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import mujoco
import numpy as np
from mujoco import mjx

from vlajax.envs import backend

Ranges = dict[str, jax.Array]   # field -> f32[2] (low, high)
Draws = dict[str, jax.Array]


# -- ranges ----------------------------------------------------------------------------------------

def subtree_matrix(mj_model: mujoco.MjModel) -> np.ndarray:
  """f32[nbody, nbody]: `subtree[b, c] = 1` if body c is in body b's subtree (b itself included)."""
  nbody = mj_model.nbody
  subtree = np.zeros((nbody, nbody), np.float32)
  for child in range(nbody):
    b = child
    while True:
      subtree[b, child] = 1.0
      if b == 0:
        break
      b = int(mj_model.body_parentid[b])
  return subtree


def config_ranges(cfg: ml_collections.ConfigDict, fields: tuple[str, ...],
                  section: str = "randomization") -> Ranges:
  """`{field: f32[2]}` for `fields` of a config section; each must be (low, high) with low <= high.
  Errors name `section.field`."""
  missing = [f for f in fields if f not in cfg]
  if missing:
    raise KeyError(f"{section} config lacks field(s) {missing} (needs {list(fields)})")
  ranges = {}
  for field in fields:
    value = np.asarray(cfg[field], np.float32)
    if value.shape != (2,):
      raise ValueError(f"{section}.{field} must be (low, high), got {cfg[field]!r}")
    if value[0] > value[1]:
      raise ValueError(f"{section}.{field}: low {value[0]} > high {value[1]}")
    ranges[field] = jnp.asarray(value)
  return ranges


def check_latency_range(ranges: Ranges, max_action_latency: int,
                        section: str = "randomization") -> None:
  """`action_latency` must lie in [0, max_action_latency] (the static buffer length)."""
  low, high = (float(v) for v in ranges["action_latency"])
  if high > max_action_latency or low < 0:
    raise ValueError(f"{section}.action_latency {(low, high)} must lie in "
                     f"[0, max_action_latency={max_action_latency}]")


def check_ranges(ranges: Ranges, fields: tuple[str, ...]) -> None:
  """Raises naming the field when one env's `ranges` lacks a field, has an unknown one, or a field
  is not shaped (2, ...) = (low, high)."""
  missing = [f for f in fields if f not in ranges]
  extra = [f for f in ranges if f not in fields]
  if missing or extra:
    raise KeyError(f"dr_ranges: missing {missing}, unknown {extra} (fields: {list(fields)})")
  for field, value in ranges.items():
    if jnp.shape(value)[:1] != (2,):
      raise ValueError(f"dr_ranges['{field}'] must have shape (2, ...) = (low, high), "
                       f"got {jnp.shape(value)}")


# -- draws -----------------------------------------------------------------------------------------

def uniform(key: jax.Array, rng_range: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
  """f32[shape] uniform in `rng_range` = (low, high)."""
  low, high = rng_range[0], rng_range[1]
  return jax.random.uniform(key, shape, minval=low, maxval=high)



def sample_latency(key: jax.Array, rng_range: jax.Array, max_action_latency: int) -> jax.Array:
  """i32[]: an integer uniform in {low, ..., high} of `rng_range`, clipped to the buffer."""
  latency = jnp.floor(uniform(key, rng_range + jnp.array([0., 1.])))
  latency = jnp.clip(latency, rng_range[0], rng_range[1])
  return jnp.clip(latency, 0, max_action_latency).astype(jnp.int32)


# -- shared model fields and non-model DR ----------------------------------------------------------

def position_gain_fields(model: mjx.Model, kp_scale: jax.Array) -> dict[str, jax.Array]:
  """`actuator_gainprm` / `actuator_biasprm` of position actuators with Kp scaled by `kp_scale`
  (f32[nu] or f32[]): gain `kp` and bias `-kp` on the position error change together."""
  kp = model.actuator_gainprm[:, 0] * kp_scale
  return {"actuator_gainprm": model.actuator_gainprm.at[:, 0].set(kp),
          "actuator_biasprm": model.actuator_biasprm.at[:, 1].set(-kp)}


def push_history(history: jax.Array, action: jax.Array) -> jax.Array:
  """Action history f32[L+1, A]: row 0 is the newest action, row k the one from k steps ago."""
  return jnp.concatenate([action[None], history[:-1]], axis=0)


def delayed_action(history: jax.Array, latency: jax.Array) -> jax.Array:
  """The action the motors see with `latency` (i32[]) control steps of delay: `history[latency]`."""
  return jnp.take(history, latency, axis=0)


# -- camera pose and lighting (for camera tasks) ---------------------------------------------------

def default_camera_light_config() -> ml_collections.ConfigDict:
  """Ranges for `perturb_camera_and_lights` (seed 001 section 16 table)."""
  return ml_collections.ConfigDict({
      "cam_pos_offset": (-0.03, 0.03),     # m, uniform per axis
      "cam_rot_deg": (-5.0, 5.0),          # degrees, uniform per axis (small-angle rotation)
      "light_intensity_scale": (0.6, 1.4),  # x on diffuse colour (+-40%)
      "light_tint": (0.9, 1.1),            # x per RGB channel (colour temperature, roughly)
      "light_pos_offset": (-0.1, 0.1),     # m, uniform per axis
  })


def _quat_from_rotvec(v: jax.Array) -> jax.Array:
  angle = jnp.linalg.norm(v)
  axis = v / jnp.maximum(angle, 1e-9)
  return jnp.concatenate([jnp.cos(angle / 2)[None], jnp.sin(angle / 2) * axis])


def _quat_mul(a: jax.Array, b: jax.Array) -> jax.Array:
  w1, x1, y1, z1 = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
  w2, x2, y2, z2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
  return jnp.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                    w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                    w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                    w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], axis=-1)


quat_mul = _quat_mul   # (w, x, y, z) Hamilton product, batched over leading axes


def camera_light_fields(model: mjx.Model, rng: jax.Array,
                        cfg: ml_collections.ConfigDict | None = None) -> dict[str, jax.Array]:
  """Perturbed `cam_pos` f32[ncam, 3], `cam_quat` f32[ncam, 4], `light_pos` f32[nlight, 3],
  `light_diffuse` f32[nlight, 3]: every camera and light gets its own draw."""
  cfg = default_camera_light_config() if cfg is None else cfg
  k_pos, k_rot, k_int, k_tint, k_lpos = jax.random.split(rng, 5)
  ncam, nlight = model.cam_pos.shape[0], model.light_pos.shape[0]
  rot = jnp.deg2rad(uniform(k_rot, jnp.asarray(cfg.cam_rot_deg), (ncam, 3)))
  dquat = jax.vmap(_quat_from_rotvec)(rot)
  quat = _quat_mul(model.cam_quat, dquat)
  quat = quat / jnp.linalg.norm(quat, axis=-1, keepdims=True)
  intensity = uniform(k_int, jnp.asarray(cfg.light_intensity_scale), (nlight, 1))
  tint = uniform(k_tint, jnp.asarray(cfg.light_tint), (nlight, 3))
  return {
      "cam_pos": model.cam_pos + uniform(k_pos, jnp.asarray(cfg.cam_pos_offset), (ncam, 3)),
      "cam_quat": quat,
      "light_pos": model.light_pos + uniform(k_lpos, jnp.asarray(cfg.light_pos_offset), (nlight, 3)),
      "light_diffuse": jnp.clip(model.light_diffuse * intensity * tint, 0.0, 1.0),
  }


def perturb_camera_and_lights(model: mjx.Model, rng: jax.Array,
                              cfg: ml_collections.ConfigDict | None = None) -> mjx.Model:
  """`model` with camera poses and lights perturbed (pure `replace`; vmap over `rng` to batch)."""
  fields = camera_light_fields(model, rng, cfg)
  backend.check_batchable(model, fields)
  return model.replace(**fields)
