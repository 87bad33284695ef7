"""`CameraWrapper`: a batched env whose observations carry camera images, for host-side loops.

  env = CameraWrapper(wrappers.wrap_for_training(task, episode_length=200),
                      cameras=("primary", "wrist"), size=(64, 64))
  state = env.reset(jax.random.split(key, B))
  state.obs["images"]["primary"]            # np.uint8[B, 64, 64, 3], on the host
  state = env.step(state, action)           # action f32[B, A]
  env.close()

`reset` and `step` run the wrapped env's jitted physics, then render every env of the batch with a
`vlajax.envs.render.BatchRenderer` and add `obs["images"] = {camera: np.uint8[B, H, W, 3]}`.

Not traceable: rendering reads the state back to the host and drives OpenGL, which neither `jit`
nor `vmap` / `scan` can trace. So this wrapper sits outside every jitted function (it is the
outermost wrapper, used by data collection, evaluation and the robot bridge, not inside a jitted
learner), and `step` drops `obs["images"]` before handing the state to the jitted physics (the
images never go back to the device). With auto-reset, the images of a step are those of the state
returned, i.e. of the fresh initial state for envs that just finished; `info["final_obs"]` has no
images.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax

from vlajax.envs import render as render_lib
from vlajax.envs.base import State
from vlajax.envs.wrappers import Wrapper


class CameraWrapper(Wrapper):
  """Adds `obs["images"][camera]` (np.uint8 [B, H, W, 3]) to a batched env's states, on the host.

  Args:
    env: a batched env (`wrappers.wrap_for_training` or `VmapWrapper`); unbatched works too and
      gives [H, W, 3].
    cameras: camera names of the env's model.
    size: image size, an int or (height, width).
    overrides_fn: optional `state -> {visual model field: array [B, ...]}`, per-env visual DR drawn
      by the task (e.g. from `state.info`), passed to `BatchRenderer.render(overrides=...)`.
    jit: jit the wrapped env's reset and step (False when they are jitted already).
    **renderer_kwargs: forwarded to `BatchRenderer` (`backend`, `shadow_size`, ...).
  """

  def __init__(self, env, cameras: Sequence[str] = ("primary",),
               size: render_lib.Size = render_lib.DEFAULT_SIZE,
               overrides_fn: Callable[[State], Mapping[str, Any]] | None = None,
               jit: bool = True, **renderer_kwargs):
    super().__init__(env)
    self.renderer = render_lib.BatchRenderer(env.mj_model, cameras=cameras, size=size,
                                             **renderer_kwargs)
    self.overrides_fn = overrides_fn
    self._reset = jax.jit(env.reset) if jit else env.reset
    self._step = jax.jit(env.step) if jit else env.step

  @property
  def cameras(self) -> tuple[str, ...]:
    return self.renderer.cameras

  def reset(self, rng: jax.Array, **kwargs) -> State:
    """`rng`: u32[B, 2] keys (as the wrapped env takes them)."""
    return self._with_images(self._reset(rng, **kwargs))

  def step(self, state: State, action: jax.Array) -> State:
    """`action`: f32[B, A]."""
    obs = {k: v for k, v in state.obs.items() if k != "images"}
    return self._with_images(self._step(state.replace(obs=obs), action))

  def render(self, state: State) -> dict[str, Any]:
    """`{camera: np.uint8[B, H, W, 3]}` for `state`."""
    overrides = self.overrides_fn(state) if self.overrides_fn is not None else None
    return self.renderer.render(state, overrides=overrides)

  def close(self) -> None:
    self.renderer.close()

  def _with_images(self, state: State) -> State:
    return state.replace(obs={**state.obs, "images": self.render(state)})
