"""Camera images of env states: `obs["images"][camera]` as uint8 [H, W, 3] (batched [B, H, W, 3]).

Rendering happens outside jitted physics, at an explicit host/device boundary:

  renderer = BatchRenderer(env.mj_model, cameras=("primary", "wrist"), size=(64, 64))
  images = renderer.render(state)             # {camera: np.uint8[B, H, W, 3]}
  renderer.close()                            # or `with BatchRenderer(...) as renderer:`

Backends:

  "mujoco"    (default) MuJoCo's own `mujoco.Renderer` (OpenGL; headless: `MUJOCO_GL=egl` set before
              mujoco is first imported). `render` device_gets the batch's `qpos`, `mocap_pos` and
              `mocap_quat` (velocities do not change a picture), and for each env copies them into
              one native `MjData`, recomputes its kinematics and camera/light poses
              (`mj_kinematics`, `mj_comPos`, `mj_camlight`, and tendons / flexes where the model has
              them) and renders each camera. The picture is a function of those arrays and the
              model only, so it is deterministic for a state. One `mujoco.Renderer` (GL context) is
              kept per image size; all of them share one private copy of the `MjModel`.
  "mjx_warp"  MJX's batch renderer (MuJoCo Warp ray tracing, `mjx.create_render_context` /
              `mjx.refit_bvh` / `mjx.render`): the whole batch in one call on the GPU, for states
              whose `mjx.Model` / `mjx.Data` were built with `impl="warp"` (pass `mjx_model`). It
              recomputes kinematics with `mjx.forward`, needs a CUDA device (JAX's and Warp's; it
              raises otherwise, unless `allow_cpu=True`, which runs Warp's CPU kernels: correct but
              slow, for tests) and keeps one render context per (batch size, image size, cameras),
              since Warp fixes the number of worlds when the context is made. Images come back to
              the host as numpy like the other backend. Its ray tracer shades differently from
              OpenGL: the two backends do not give equal pixels.

Visual domain randomization: `render(state, overrides={field: array})` writes per-env values of
model fields (`VISUAL_FIELDS`) into the private model copy before rendering each env and restores
the nominal values after it. Each array is `[B, *field_shape]` (or `field_shape`, shared by every
env), e.g. `cam_pos` [B, ncam, 3]. The names are the model's, as in
`vlajax.envs.randomization.camera_light_fields`, whose vmapped output is such a dict:

  fields = jax.vmap(lambda k: randomization.camera_light_fields(env.mjx_model, k))(keys)
  images = renderer.render(state, overrides=fields)

Not thread-safe (one GL context current at a time, one shared `MjData`). Not traceable: `render`
reads arrays back to the host, so call it outside `jit` / `vmap` / `scan`.
"""
from __future__ import annotations

import copy
import math
import weakref
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from vlajax.envs import backend as physics_backend

MAX_SIZE = 224
DEFAULT_SIZE = (64, 64)
BACKENDS = ("mujoco", "mjx_warp")

# Model fields a render may override per env (read by mjv_updateScene / mj_camlight; not physics).
VISUAL_FIELDS = ("geom_rgba", "mat_rgba", "cam_pos", "cam_quat", "cam_fovy", "light_pos",
                 "light_dir", "light_diffuse", "light_ambient", "light_specular")

Size = int | tuple[int, int]


def camera_names(mj_model: mujoco.MjModel) -> tuple[str, ...]:
  """The model's camera names in id order."""
  return tuple(mj_model.camera(i).name for i in range(mj_model.ncam))


def check_size(size: Size, mj_model: mujoco.MjModel) -> tuple[int, int]:
  """`(height, width)` from an int or a pair; ValueError naming the size when a side is < 1 or above
  `MAX_SIZE` or the model's offscreen buffer (`<visual><global offwidth offheight>`)."""
  if isinstance(size, (int, np.integer)):
    size = (int(size), int(size))
  if (not isinstance(size, (tuple, list)) or len(size) != 2
      or not all(isinstance(s, (int, np.integer)) for s in size)):
    raise ValueError(f"image size must be an int or (height, width) ints, got {size!r}")
  height, width = int(size[0]), int(size[1])
  max_h = min(MAX_SIZE, mj_model.vis.global_.offheight)
  max_w = min(MAX_SIZE, mj_model.vis.global_.offwidth)
  if not (1 <= height <= max_h and 1 <= width <= max_w):
    raise ValueError(f"image size (height, width) = {(height, width)} is out of range: each side "
                     f"must be >= 1 and <= {MAX_SIZE} and the model's offscreen buffer "
                     f"(offheight {mj_model.vis.global_.offheight}, "
                     f"offwidth {mj_model.vis.global_.offwidth})")
  return height, width


def camera_ids(cameras: Sequence[str], mj_model: mujoco.MjModel) -> tuple[int, ...]:
  """Ids of the named cameras; KeyError naming an unknown one and listing the model's cameras."""
  if isinstance(cameras, str):
    cameras = (cameras,)
  if not cameras:
    raise ValueError("no cameras requested")
  known = camera_names(mj_model)
  ids = []
  for name in cameras:
    cam = -1
    if isinstance(name, str):
      cam = mujoco.mj_name2id(mj_model, mujoco.mjtObj.mjOBJ_CAMERA, name)
    if cam < 0:
      raise KeyError(f"unknown camera {name!r}; the env's cameras are {list(known)}")
    ids.append(cam)
  return tuple(ids)


def _physics_data(state: Any) -> Any:
  """`state.data` for an env `State`, else `state` itself (an `mjx.Data` or anything with `qpos`,
  `mocap_pos`, `mocap_quat`)."""
  data = getattr(state, "data", state)
  for field in ("qpos", "mocap_pos", "mocap_quat"):
    if not hasattr(data, field):
      raise TypeError(f"cannot render {type(state).__name__}: it has no '{field}' (pass an env "
                      "State, an mjx.Data, or an object with qpos, mocap_pos and mocap_quat)")
  return data


def _close_renderers(renderers: dict) -> None:
  for renderer in renderers.values():
    renderer.close()
  renderers.clear()


class BatchRenderer:
  """Renders env states (batched or not) to uint8 images per named camera.

  Args:
    mj_model: the env's `MjModel` (`env.mj_model`); it is copied, never written.
    cameras: default cameras for `render`.
    size: default image size, an int or (height, width), 1..224 and within the model's offscreen
      buffer.
    backend: "mujoco" (host OpenGL, default) or "mjx_warp" (MJX batch renderer; see module doc).
    shadow_size: "mujoco" only: shadow-map size in texels for the private model copy (None: the
      model's `<visual><quality shadowsize>`, MuJoCo's default 4096). The shadow map costs more
      than the image on a software GL: 512 renders 3-5x faster on Mesa llvmpipe (64-224 px).
    mjx_model: "mjx_warp" only: the env's `mjx.Model`, put with `impl="warp"`.
    allow_cpu: "mjx_warp" only: run Warp's CPU kernels when there is no CUDA device (slow).
  """

  def __init__(self, mj_model: mujoco.MjModel, cameras: Sequence[str] = ("primary",),
               size: Size = DEFAULT_SIZE, backend: str = "mujoco",
               shadow_size: int | None = None, mjx_model: mjx.Model | None = None,
               allow_cpu: bool = False):
    if backend not in BACKENDS:
      raise ValueError(f"render backend must be one of {BACKENDS}, got {backend!r}")
    self.backend = backend
    self._model = copy.deepcopy(mj_model)
    if shadow_size is not None:
      if not isinstance(shadow_size, int) or shadow_size < 1:
        raise ValueError(f"shadow_size must be a positive int, got {shadow_size!r}")
      self._model.vis.quality.shadowsize = shadow_size
    self.cameras = tuple(cameras) if not isinstance(cameras, str) else (cameras,)
    camera_ids(self.cameras, self._model)
    self.size = check_size(size, self._model)
    self._data = mujoco.MjData(self._model)
    self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
    # Closes the GL contexts at exit too, before interpreter teardown (mujoco.Renderer.__del__
    # then prints a TypeError).
    self._finalizer = weakref.finalize(self, _close_renderers, self._renderers)
    self._warp = (_MjxWarpRenderer(self._model, mjx_model, allow_cpu)
                  if backend == "mjx_warp" else None)

  @property
  def mj_model(self) -> mujoco.MjModel:
    """The private model copy the images are rendered from."""
    return self._model

  @property
  def camera_names(self) -> tuple[str, ...]:
    """Every camera of the model."""
    return camera_names(self._model)

  def render(self, state: Any, cameras: Sequence[str] | None = None, size: Size | None = None,
             overrides: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Images of `state` (a State, an mjx.Data, or anything with `qpos`, `mocap_pos`, `mocap_quat`).

    With `qpos` of shape [*batch, nq] (batch () for one env), returns
    `{camera: np.uint8[*batch, H, W, 3]}`. `overrides`: per-env visual model fields (module doc).
    Host-side: reads the arrays back from the device; not traceable.
    """
    cameras = self.cameras if cameras is None else (
        (cameras,) if isinstance(cameras, str) else tuple(cameras))
    ids = camera_ids(cameras, self._model)
    height, width = self.size if size is None else check_size(size, self._model)
    data = _physics_data(state)
    if self._warp is not None:
      if overrides:
        raise NotImplementedError("render overrides are not supported by backend='mjx_warp' "
                                  "(write them into the warp mjx.Model); use backend='mujoco'")
      frames = self._warp.render(data, ids, (height, width))
      return {name: frames[cam] for name, cam in zip(cameras, ids)}
    return self._render_mujoco(data, cameras, ids, (height, width), overrides)

  def close(self) -> None:
    """Frees every GL context (safe to call twice)."""
    self._finalizer()

  def __enter__(self) -> "BatchRenderer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # -- "mujoco" backend -------------------------------------------------------------------------

  def _renderer(self, height: int, width: int) -> mujoco.Renderer:
    if not self._finalizer.alive:
      raise RuntimeError("BatchRenderer is closed")
    key = (height, width)
    if key not in self._renderers:
      try:
        self._renderers[key] = mujoco.Renderer(self._model, height=height, width=width)
      except mujoco.FatalError as err:
        raise RuntimeError(
            f"mujoco.Renderer could not make an OpenGL context ({err}). Headless, set "
            "MUJOCO_GL=egl (or osmesa) in the environment before mujoco is first imported") from err
    return self._renderers[key]

  def _render_mujoco(self, data: Any, cameras: Sequence[str], ids: Sequence[int],
                     size: tuple[int, int], overrides: Mapping[str, Any] | None
                     ) -> dict[str, np.ndarray]:
    m, d = self._model, self._data
    # The host/device boundary: one transfer of the arrays a picture depends on.
    qpos, mocap_pos, mocap_quat = (np.asarray(a) for a in jax.device_get(
        (data.qpos, data.mocap_pos, data.mocap_quat)))
    if qpos.shape[-1:] != (m.nq,):
      raise ValueError(f"qpos has shape {qpos.shape}; the model needs [..., nq={m.nq}]")
    batch = qpos.shape[:-1]
    count = math.prod(batch)
    qpos = qpos.reshape(count, m.nq)
    mocap_pos = mocap_pos.reshape(count, m.nmocap, 3)
    mocap_quat = mocap_quat.reshape(count, m.nmocap, 4)
    fields = _check_overrides(m, overrides or {}, batch)
    renderer = self._renderer(*size)
    images = np.empty((len(ids), count, *size, 3), np.uint8)
    nominal = {name: getattr(m, name).copy() for name in fields}
    for i in range(count):
      try:
        for name, values in fields.items():
          getattr(m, name)[...] = values[i]
        d.qpos[:], d.mocap_pos[:], d.mocap_quat[:] = qpos[i], mocap_pos[i], mocap_quat[i]
        _pose(m, d)
        for k, cam in enumerate(ids):
          renderer.update_scene(d, camera=cam)
          renderer.render(out=images[k, i])
      finally:
        for name, values in nominal.items():
          getattr(m, name)[...] = values
    return {name: images[k].reshape(*batch, *size, 3) for k, name in enumerate(cameras)}


def _pose(m: mujoco.MjModel, d: mujoco.MjData) -> None:
  """Positions of everything drawn (bodies, geoms, cameras, lights, tendons, flexes) from qpos."""
  mujoco.mj_kinematics(m, d)
  mujoco.mj_comPos(m, d)
  mujoco.mj_camlight(m, d)
  if m.nflex:
    mujoco.mj_flex(m, d)
  if m.ntendon:
    mujoco.mj_tendon(m, d)


def _check_overrides(m: mujoco.MjModel, overrides: Mapping[str, Any], batch: tuple[int, ...]
                     ) -> dict[str, np.ndarray]:
  """Override arrays as [count, *field_shape] float64; errors name the field."""
  count = math.prod(batch)
  fields = {}
  for name, values in overrides.items():
    if name not in VISUAL_FIELDS:
      raise KeyError(f"render override '{name}' is not a visual model field {list(VISUAL_FIELDS)}")
    shape = getattr(m, name).shape
    values = np.asarray(jax.device_get(values), np.float64)
    if values.shape == shape:
      values = np.broadcast_to(values, (count, *shape))
    elif values.shape == (*batch, *shape):
      values = values.reshape(count, *shape)
    else:
      raise ValueError(f"render override '{name}' has shape {values.shape}; expected "
                       f"{(*batch, *shape)} (per env) or {shape} (shared)")
    fields[name] = values
  return fields


# -- "mjx_warp" backend ---------------------------------------------------------------------------

def cuda_available() -> bool:
  """True when both JAX and Warp see a CUDA device (what MJX's Warp renderer runs on)."""
  try:
    if not jax.devices("cuda"):
      return False
  except RuntimeError:
    return False
  import warp  # pylint: disable=import-outside-toplevel
  return bool(warp.is_cuda_available())


class _MjxWarpRenderer:
  """MJX's batch renderer over warp Data with a leading world axis (see the module doc)."""

  def __init__(self, mj_model: mujoco.MjModel, mjx_model: mjx.Model | None, allow_cpu: bool):
    if not physics_backend.warp_available():
      raise ImportError("render backend='mjx_warp' needs warp-lang, which is not importable: "
                        'pip install -e ".[warp]"')
    if mjx_model is None or not physics_backend.is_warp(mjx_model):
      raise ValueError("render backend='mjx_warp' needs mjx_model=the env's mjx.Model put with "
                       "impl='warp' (env config impl='warp'); got "
                       + ("none" if mjx_model is None else f"impl={mjx_model.impl.value!r}"))
    if not allow_cpu and not cuda_available():
      raise RuntimeError("render backend='mjx_warp' needs a CUDA GPU visible to JAX and Warp, and "
                         "none is; use backend='mujoco' (or allow_cpu=True: Warp's CPU kernels, "
                         "slow)")
    self._mj_model = mj_model
    self._mjx_model = mjx_model
    self._contexts: dict[tuple, Any] = {}
    self._forward = jax.jit(jax.vmap(mjx.forward, in_axes=(None, 0)))
    self._refit = jax.jit(mjx.refit_bvh)
    self._render = jax.jit(mjx.render)

  def _context(self, nworld: int, size: tuple[int, int], ids: tuple[int, ...]):
    key = (nworld, size, ids)
    if key not in self._contexts:
      height, width = size
      self._contexts[key] = mjx.create_render_context(
          mjm=self._mj_model, nworld=nworld, cam_res=(width, height), render_rgb=True,
          render_depth=False, cam_active=list(ids))
    return self._contexts[key]

  def render(self, data: mjx.Data, ids: Sequence[int], size: tuple[int, int]
             ) -> dict[int, np.ndarray]:
    if data.impl.value != "warp":
      raise ValueError(f"render backend='mjx_warp' needs a warp mjx.Data, got impl="
                       f"{data.impl.value!r}")
    unbatched = data.qpos.ndim == 1
    if unbatched:   # vmap, not a leaf-wise expand: Warp's shared buffers keep no world axis
      data = jax.vmap(lambda _: data)(jnp.arange(1))
    elif data.qpos.ndim != 2:
      raise ValueError(f"backend='mjx_warp' renders one batch axis; qpos has shape "
                       f"{data.qpos.shape}")
    ids = tuple(sorted(set(ids)))
    ctx = self._context(int(data.qpos.shape[0]), size, ids)
    data = self._forward(self._mjx_model, data)
    data = self._refit(self._mjx_model, data, ctx.pytree())
    rgb, _, _ = self._render(self._mjx_model, data, ctx.pytree())
    frames = {}
    for cam in ids:
      image = mjx.get_rgb(ctx.pytree(), cam, rgb)   # f32[B, H, W, 3] in [0, 1]
      image = np.asarray(jax.device_get(jnp.round(image * 255.0).astype(jnp.uint8)))
      frames[cam] = image[0] if unbatched else image
    return frames
