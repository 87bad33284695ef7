"""MJX physics step time with and without `vlajax.core.cpu_fusion`'s per-depth fences; JSON out.

Each (model, setting) runs in its own process (the patch is installed at import time):
`VLAJAX_MJX_FUSION=1` keeps MJX's body-tree scan as it is. Times are the mean of `--steps` calls of
a jitted, vmapped `mjx.step` over `--worlds` worlds at `qpos0`, after one compiling call.

  python benchmarks/mjx_tree_fusion.py --models=quadruped,arm_6dof,arm_7dof --worlds=16
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp
import vlajax
from mujoco import mjx
from vlajax.core import cpu_fusion
from vlajax.envs import assets
name, worlds, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mj_model = assets.load(name)
model = mjx.put_model(mj_model)
data = jax.vmap(lambda _: mjx.make_data(model))(jnp.arange(worlds))
step = jax.jit(jax.vmap(lambda d: mjx.step(model, d)))
tic = time.perf_counter(); data = jax.block_until_ready(step(data)); compile_s = time.perf_counter() - tic
tic = time.perf_counter()
for _ in range(steps):
  data = step(data)
jax.block_until_ready(data)
print(json.dumps({"tree_depth": cpu_fusion.tree_depth(mj_model), "compile_s": round(compile_s, 1),
                  "ms_per_step": round((time.perf_counter() - tic) / steps * 1e3, 3)}))
"""


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="quadruped,arm_6dof,arm_7dof")
  parser.add_argument("--worlds", type=int, default=16)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  results = []
  for name in args.models.split(","):
    row = {"model": name, "worlds": args.worlds}
    for label, untouched in (("unfenced", "1"), ("fenced", "0")):
      env = dict(os.environ, VLAJAX_MJX_FUSION=untouched, JAX_PLATFORMS="cpu")
      out = subprocess.run([sys.executable, "-c", CHILD, name, str(args.worlds), str(args.steps)],
                           env=env, capture_output=True, text=True, check=True)
      row[label] = json.loads(out.stdout.strip().splitlines()[-1])
    row["speedup"] = round(row["unfenced"]["ms_per_step"] / row["fenced"]["ms_per_step"], 2)
    results.append(row)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()
