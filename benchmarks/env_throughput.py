"""Raw env throughput: jitted, vmapped `step` (env steps/s) per env and batch size, DR on and off,
and brax's MJX `ant` measured in the same run. Prints JSON (and writes it with --out).

  python benchmarks/env_throughput.py                                   # CPU: small batches
  python benchmarks/env_throughput.py --batch_sizes=1,16,256,1024,4096 --steps=100   # accelerator

Each measurement jits `lax.scan` over `--steps` control steps of `vmap(env.step)` with uniform random
actions in [-1, 1] (no resets, no learner), runs it once to compile, then reports the best of
`--repeats` timed runs. DR on/off runs of one env and batch size are timed alternately so machine
load affects both alike; `dr_cost` reports 1 - (steps/s with DR) / (steps/s without), from the best
and from the median run (the median is the steadier figure on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import jax

from vlajax import envs


def rollout_fn(reset, step, batch: int, action_size: int, n_steps: int):
  """(jitted init(rng) -> state, jitted run(state, rng) -> state over n_steps batched steps)."""
  init = jax.jit(lambda rng: jax.vmap(reset)(jax.random.split(rng, batch)))

  def run(state, rng):
    def body(carry, _):
      s, key = carry
      key, k_act = jax.random.split(key)
      action = jax.random.uniform(k_act, (batch, action_size), minval=-1.0, maxval=1.0)
      return (jax.vmap(step)(s, action), key), None
    (state, _), _ = jax.lax.scan(body, (state, rng), None, length=n_steps)
    return state

  return init, jax.jit(run)


class Case:
  """One (env, batch, dr) measurement: compiles on construction, then `time_once()`."""

  def __init__(self, name: str, env, batch: int, n_steps: int, dr: bool | None, substeps: int,
               reset=None, step=None, action_size=None):
    self.name, self.batch, self.n_steps, self.dr, self.substeps = name, batch, n_steps, dr, substeps
    init, self.run = rollout_fn(reset or env.reset, step or env.step, batch,
                                action_size or env.action_size, n_steps)
    start = time.perf_counter()
    self.state = jax.block_until_ready(init(jax.random.PRNGKey(0)))
    for warmup in range(2):   # the second call sees run's own output types (no later recompiles)
      self.state = jax.block_until_ready(self.run(self.state, jax.random.PRNGKey(warmup + 1)))
    self.compile_s = time.perf_counter() - start
    self.times = []

  def time_once(self):
    start = time.perf_counter()
    self.state = jax.block_until_ready(self.run(self.state, jax.random.PRNGKey(len(self.times))))
    self.times.append(time.perf_counter() - start)

  def result(self) -> dict:
    best = min(self.times)
    sps = self.batch * self.n_steps / best
    return {"env": self.name, "batch": self.batch, "dr": self.dr, "steps_per_s": sps,
            "physics_steps_per_s": sps * self.substeps, "best_s": best,
            "median_s": sorted(self.times)[len(self.times) // 2], "compile_s": self.compile_s,
            "n_steps": self.n_steps}


def brax_ant():
  from brax import envs as brax_envs  # pylint: disable=import-outside-toplevel
  env = brax_envs.get_environment("ant", backend="mjx")
  return env, int(getattr(env, "_n_frames", 1))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--envs", default="cartpole,quadruped_joystick",
                      help="comma-separated registered env names")
  parser.add_argument("--batch_sizes", default="1,16,256", help="comma-separated batch sizes")
  parser.add_argument("--steps", type=int, default=20, help="control steps per timed scan")
  parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (best is kept)")
  parser.add_argument("--no_ant", action="store_true", help="skip brax's MJX ant")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  batches = [int(b) for b in args.batch_sizes.split(",") if b]
  names = [n for n in args.envs.split(",") if n]

  results, dr_cost = [], []
  for batch in batches:
    for name in names:
      env = envs.make(name)
      cfg = env.config
      if "randomization" in cfg:
        off = envs.make(name, randomization={"enabled": False})
        cases = [Case(name, env, batch, args.steps, True, env.n_substeps),
                 Case(name, off, batch, args.steps, False, off.n_substeps)]
      else:
        cases = [Case(name, env, batch, args.steps, None, env.n_substeps)]
      for _ in range(args.repeats):   # alternate DR on/off so load hits both alike
        for case in cases:
          case.time_once()
      out = [c.result() for c in cases]
      results += out
      if len(out) == 2:
        best = out[0]["steps_per_s"] / out[1]["steps_per_s"]
        median = out[1]["median_s"] / out[0]["median_s"]
        dr_cost.append({"env": name, "batch": batch, "dr_over_no_dr_best": best,
                        "dr_over_no_dr_median": median, "dr_cost_pct_best": 100.0 * (1.0 - best),
                        "dr_cost_pct_median": 100.0 * (1.0 - median)})
      for r in out:
        print(json.dumps(r), flush=True)
    if not args.no_ant:
      ant, frames = brax_ant()
      case = Case("brax_mjx_ant", ant, batch, args.steps, None, frames)
      for _ in range(args.repeats):
        case.time_once()
      results.append(case.result())
      print(json.dumps(results[-1]), flush=True)

  report = {
      "benchmark": "env_throughput",
      "device": str(jax.devices()[0]),
      "platform": jax.default_backend(),
      "device_count": jax.device_count(),
      "host": platform.node(),
      "jax": jax.__version__,
      "args": vars(args),
      "results": results,
      "dr_cost": dr_cost,
  }
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return report


if __name__ == "__main__":
  main()
