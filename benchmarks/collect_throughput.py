"""Is data collection physics-bound or render-bound? Env steps/s of the host loop that collection
and image-policy evaluation run (`envs.camera_wrapper.CameraWrapper` around the batched env), with
and without rendering, side by side in one run. Prints JSON (and writes it with --out).

  MUJOCO_GL=egl python benchmarks/collect_throughput.py
  MUJOCO_GL=egl python benchmarks/collect_throughput.py --tasks=arm_pick_cube --batch_sizes=1,16,64 \
      --cameras=primary,wrist --size=64

Per (task, batch B): `physics` steps the jitted batched env (episode + vmap wrappers, as
`rollout_on_host`) once per host call and blocks on it; `physics_render` is the same loop through
`CameraWrapper` (the state read back and every env's cameras rendered after each step). Both use
the same random actions, after a warm-up of a few steps (compile, GL context). `render_share` is
the fraction of the rendered loop's time spent outside the physics; `bound` says which dominates.
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

from vlajax import envs
from vlajax.envs import camera_wrapper, rollout


def _steps_per_s(env, batch: int, steps: int, seed: int = 0) -> float:
  """Env steps/s of `steps` host-loop steps of the batched `env` (random actions in [-1, 1])."""
  keys = jax.random.split(jax.random.PRNGKey(seed), batch)
  actions = jax.random.uniform(jax.random.PRNGKey(seed + 1), (steps + 3, batch, env.action_size),
                               minval=-1.0, maxval=1.0)
  state = env.reset(keys)
  for t in range(3):  # warm-up: compile, first frames
    state = env.step(state, actions[t])
  jax.block_until_ready(state.reward)
  tic = time.perf_counter()
  for t in range(3, steps + 3):
    state = env.step(state, actions[t])
    jax.block_until_ready(state.reward)
  return batch * steps / (time.perf_counter() - tic)


class _Jitted:
  """A batched env with jitted reset / step (the physics-only loop; the camera loop reuses them, so
  each batch size compiles once)."""

  def __init__(self, env):
    self._env = env
    self.reset = jax.jit(env.reset)
    self.step = jax.jit(env.step)

  def __getattr__(self, name):
    return getattr(self._env, name)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tasks", default="arm_pick_cube")
  parser.add_argument("--batch_sizes", default="1,16")
  parser.add_argument("--cameras", default="primary")
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()

  cameras = tuple(args.cameras.split(","))
  result = {"cameras": list(cameras), "size": args.size, "steps": args.steps,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "jax_devices": [str(d) for d in jax.devices()], "MUJOCO_GL": os.environ["MUJOCO_GL"],
            "cases": []}
  for task in args.tasks.split(","):
    env = envs.make(task)
    batched = rollout.make_batched_env(env, env.config.episode_length)
    for batch in (int(b) for b in args.batch_sizes.split(",")):
      jitted = _Jitted(batched)
      physics = _steps_per_s(jitted, batch, args.steps)
      camera_env = camera_wrapper.CameraWrapper(jitted, cameras=cameras, size=args.size, jit=False)
      try:
        rendered = _steps_per_s(camera_env, batch, args.steps)
      finally:
        camera_env.close()
      share = 1.0 - rendered / physics
      case = {"task": task, "batch": batch, "physics_env_steps_per_s": physics,
              "physics_render_env_steps_per_s": rendered,
              "frames_per_s": rendered * len(cameras), "render_share": share,
              "bound": "render" if share > 0.5 else "physics"}
      result["cases"].append(case)
      print(json.dumps(case), flush=True)
  print(json.dumps(result, indent=1))
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
