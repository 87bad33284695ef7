"""Where a PPO iteration's time goes: rollout alone vs the whole iteration vs raw env steps; JSON out.

Also the iteration with 1 epoch x 1 minibatch (the SGD's share) and with the advantages computed
once per iteration instead of in every minibatch (`recompute_advantages=False`: GAE's share).
`--env=reacher` is brax's MJX reacher (as in `ppo_vs_brax.py`).

  python benchmarks/ppo_breakdown.py --env=quadruped_joystick --num_envs=8192 --minibatches=32
  python benchmarks/ppo_breakdown.py --env=reacher --num_envs=4096 --minibatches=32 --hidden=256,256
"""
import argparse
import json
import time

import jax

from ppo_vs_brax import make_env
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
  parser.add_argument("--hidden", default="512,256,128")
  args = parser.parse_args()
  env, _ = make_env(args.env, 1000)
  hidden = tuple(int(h) for h in args.hidden.split(","))
  cfg = ppo.default_config()
  cfg.update(dict(num_envs=args.num_envs, unroll_length=args.unroll, policy_hidden=hidden,
                  value_hidden=hidden, num_minibatches=args.minibatches, num_epochs=args.epochs))
  if "privileged_state" not in env.observation_size:
    cfg.value_obs_key = "state"
  out = {"env": args.env, "device": jax.devices()[0].device_kind, "num_envs": args.num_envs}
  learner = ppo.Learner(env, cfg, mesh_lib.make_mesh({"data": -1}))
  state = learner.init(jax.random.PRNGKey(0))
  rollout = jax.jit(lambda s, k: learner._rollout(s, k))  # pylint: disable=protected-access
  out["rollout_s"] = timed(rollout, state, jax.random.PRNGKey(1))
  iteration = jax.jit(learner._iteration)  # pylint: disable=protected-access
  out["iteration_s"] = timed(iteration, state)
  variants = {"iteration_s_epochs1_minibatches1": dict(num_epochs=1, num_minibatches=1),
              "iteration_s_advantages_once": dict(recompute_advantages=False)}
  for name, overrides in variants.items():
    c = cfg.copy_and_resolve_references()
    c.update(overrides)
    l2 = ppo.Learner(env, c, mesh_lib.make_mesh({"data": -1}))
    s2 = l2.init(jax.random.PRNGKey(0))
    out[name] = timed(jax.jit(l2._iteration), s2)  # pylint: disable=protected-access
  steps = args.num_envs * args.unroll
  out["rollout_env_steps_per_s"] = steps / out["rollout_s"]
  out["iteration_env_steps_per_s"] = steps / out["iteration_s"]
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
