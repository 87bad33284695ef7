"""Camera rendering throughput: images/s of `vlajax.envs.render.BatchRenderer` on the arm model, per
image size and batch size. Prints JSON (and writes it with --out).

  MUJOCO_GL=egl python benchmarks/render_throughput.py                 # CPU, MuJoCo's OpenGL
  MUJOCO_GL=egl python benchmarks/render_throughput.py --shadow_sizes=model,512
  python benchmarks/render_throughput.py --backend=mjx_warp --batch_sizes=1,16,256,1024  # CUDA

Each case renders `--repeats` calls of `render(state)` for a batch of `B` states (device arrays of
`qpos`, `mocap_pos`, `mocap_quat`, cube positions spread over the table so that no two frames are
alike), after one warm-up call (GL context, shadow map, or Warp's kernels and render context).
`frames_per_s` counts one image per env and camera; it includes the device_get of the batch and,
for "mujoco", the per-env kinematics on the host. "shadow_size" is the shadow-map size (`model`:
the MJCF's, MuJoCo's default 4096), which dominates the cost of a small image on a software GL.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")

# pylint: disable=wrong-import-position
import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx

from vlajax.envs import assets, render


def states(mj_model: mujoco.MjModel, batch: int, impl: str):
  """`batch` home-pose states (mjx.Data with a leading axis) with the cube at spread positions."""
  key = mj_model.key("home")
  if impl == "warp":
    data = mjx.make_data(mj_model, impl="warp", naconmax=8 * batch, njmax=32)
  else:
    data = mjx.make_data(mjx.put_model(mj_model))
  data = data.replace(qpos=jnp.asarray(key.qpos), mocap_pos=jnp.asarray(key.mpos)[None],
                      mocap_quat=jnp.asarray(key.mquat)[None])
  adr = int(mj_model.joint("cube").qposadr[0])
  offsets = jnp.stack([jnp.linspace(-0.1, 0.1, batch), jnp.linspace(-0.2, 0.2, batch)], -1)
  return jax.vmap(lambda o: data.replace(qpos=data.qpos.at[adr:adr + 2].add(o)))(offsets)


def gl_renderer_name(renderer: render.BatchRenderer) -> str | None:
  """The OpenGL renderer string (e.g. llvmpipe), or None when it cannot be read."""
  try:
    from OpenGL import GL  # pylint: disable=import-outside-toplevel
    # pylint: disable-next=protected-access
    gl = next(iter(renderer._renderers.values()))._gl_context
    gl.make_current()
    return GL.glGetString(GL.GL_RENDERER).decode()
  except Exception:  # pylint: disable=broad-except
    return None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="64,128,224")
  parser.add_argument("--batch_sizes", default="1,16")
  parser.add_argument("--cameras", default="primary")
  parser.add_argument("--backend", default="mujoco", choices=render.BACKENDS)
  parser.add_argument("--shadow_sizes", default="model",
                      help="comma list of shadow-map sizes; 'model' = the MJCF's")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()

  mj_model = assets.load("arm_7dof")
  cameras = tuple(args.cameras.split(","))
  impl = "warp" if args.backend == "mjx_warp" else "jax"
  mjx_model = mjx.put_model(mj_model, impl="warp") if impl == "warp" else None
  result = {"backend": args.backend, "cameras": list(cameras), "platform": platform.platform(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "jax_devices": [str(d) for d in jax.devices()], "MUJOCO_GL": os.environ["MUJOCO_GL"],
            "cases": []}
  for shadow in args.shadow_sizes.split(","):
    shadow_size = None if shadow == "model" else int(shadow)
    if args.backend == "mjx_warp" and shadow_size is not None:
      continue
    with render.BatchRenderer(mj_model, cameras=cameras, backend=args.backend,
                              shadow_size=shadow_size, mjx_model=mjx_model) as renderer:
      for size in (int(s) for s in args.sizes.split(",")):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
          state = states(mj_model, batch, impl)
          start = time.perf_counter()
          renderer.render(state, size=size)
          warmup_s = time.perf_counter() - start
          times = []
          for _ in range(args.repeats):
            start = time.perf_counter()
            renderer.render(state, size=size)
            times.append(time.perf_counter() - start)
          best = min(times)
          result["cases"].append({
              "size": size, "batch": batch,
              "shadow_size": shadow if args.backend == "mujoco" else None,
              "frames_per_s": round(batch * len(cameras) / best, 1),
              "ms_per_call": round(1e3 * best, 2), "warmup_s": round(warmup_s, 3)})
      if args.backend == "mujoco" and "gl_renderer" not in result:
        result["gl_renderer"] = gl_renderer_name(renderer)
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
