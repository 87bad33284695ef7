"""Compile and run time of one jitted closed-loop rollout (scripted expert) of an arm task.

For the test suite's budget on CPU: MJX programs of the arm tasks take minutes to compile. Run
once per XLA setting (each in a fresh process, without a compilation cache):

  python benchmarks/compile_time.py --env=arm_reach --num_envs=16 --steps=100
  XLA_FLAGS=--xla_backend_optimization_level=0 python benchmarks/compile_time.py --env=arm_reach

Prints one JSON line: trace+lower seconds, compile seconds, first and second run seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax

from vlajax import envs
from vlajax.envs import rollout as rollout_lib
from vlajax.envs.manipulation import experts


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="arm_reach")
  parser.add_argument("--num_envs", type=int, default=16)
  parser.add_argument("--steps", type=int, default=100)
  args = parser.parse_args()
  env = envs.make(args.env, action_space="ee_delta")
  expert = jax.vmap(experts.make_expert(env))
  batched = rollout_lib.make_batched_env(env, args.steps)
  act = lambda carry, state, rng: (expert(state), carry)
  run = jax.jit(lambda keys, rng: rollout_lib.rollout(batched, act, (), keys, args.steps, rng,
                                                      observe=rollout_lib.full_state))
  keys = jax.random.split(jax.random.PRNGKey(0), args.num_envs)
  rng = jax.random.PRNGKey(1)
  tic = time.perf_counter()
  lowered = run.lower(keys, rng)
  lower_s = time.perf_counter() - tic
  tic = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - tic
  times = []
  for _ in range(2):
    tic = time.perf_counter()
    episodes = jax.block_until_ready(compiled(keys, rng))
    times.append(time.perf_counter() - tic)
  print(json.dumps({"env": args.env, "num_envs": args.num_envs, "steps": args.steps,
                    "xla_flags": os.environ.get("XLA_FLAGS", ""), "lower_s": round(lower_s, 1),
                    "compile_s": round(compile_s, 1), "run_s": [round(t, 2) for t in times],
                    "successes": int(episodes.success.sum())}))


if __name__ == "__main__":
  main()
