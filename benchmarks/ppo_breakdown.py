"""Where a PPO iteration's time goes: rollout alone vs the whole iteration vs raw env steps; JSON out.

  python benchmarks/ppo_breakdown.py --env=quadruped_joystick --num_envs=8192 --minibatches=32
"""
import argparse
import json
import time

import jax

from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.rl import ppo


def timed(fn, *args, repeats=3):
  out = fn(*args)
  jax.block_until_ready(out)
  best = float("inf")
  for _ in range(repeats):
    tic = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - tic)
  return best


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--env", default="cartpole")
  parser.add_argument("--num_envs", type=int, default=256)
  parser.add_argument("--unroll", type=int, default=20)
  parser.add_argument("--minibatches", type=int, default=8)
  parser.add_argument("--epochs", type=int, default=4)
  args = parser.parse_args()
  env = envs.make(args.env)
  cfg = ppo.default_config()
  cfg.update(dict(num_envs=args.num_envs, unroll_length=args.unroll,
                  num_minibatches=args.minibatches, num_epochs=args.epochs))
  if "privileged_state" not in env.observation_size:
    cfg.value_obs_key = "state"
  out = {"env": args.env, "device": jax.devices()[0].device_kind, "num_envs": args.num_envs}
  learner = ppo.Learner(env, cfg, mesh_lib.make_mesh({"data": -1}))
  state = learner.init(jax.random.PRNGKey(0))
  rollout = jax.jit(lambda s, k: learner._rollout(s, k))  # pylint: disable=protected-access
  out["rollout_s"] = timed(rollout, state, jax.random.PRNGKey(1))
  iteration = jax.jit(learner._iteration)  # pylint: disable=protected-access
  out["iteration_s"] = timed(iteration, state)
  for epochs, minibatches in ((1, 1), (args.epochs, args.minibatches)):
    c = cfg.copy_and_resolve_references()
    c.update(dict(num_epochs=epochs, num_minibatches=minibatches))
    l2 = ppo.Learner(env, c, mesh_lib.make_mesh({"data": -1}))
    s2 = l2.init(jax.random.PRNGKey(0))
    out[f"iteration_s_epochs{epochs}_minibatches{minibatches}"] = timed(
        jax.jit(l2._iteration), s2)  # pylint: disable=protected-access
  steps = args.num_envs * args.unroll
  out["rollout_env_steps_per_s"] = steps / out["rollout_s"]
  out["iteration_env_steps_per_s"] = steps / out["iteration_s"]
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
