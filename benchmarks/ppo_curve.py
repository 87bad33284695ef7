"""Our PPO's evaluation return along training at `ppo_vs_brax.py`'s settings, per config variant.

For ablations of a gap `ppo_vs_brax.py` shows (it evaluates ours at the end only): each `;`-separated
variant of `--variants` ("key=value,..." overrides of `vlajax.rl.ppo` config keys, "" = as in
`ppo_vs_brax.py`) trains from seed 0 and prints one JSON line per evaluation (`--eval_envs` fresh
episodes, deterministic) with the policy's mean std; then a summary JSON.

  python benchmarks/ppo_curve.py --env=reacher --num_envs=4096 --minibatches=32 --iterations=20 \
      --hidden=256,256 --variants=";init_noise_std=0.69"
"""
from __future__ import annotations

import argparse
import ast
import json

import jax

from ppo_vs_brax import make_env, ours_config
from progress_log import log
from vlajax.core import mesh as mesh_lib
from vlajax.core.config import apply_overrides
from vlajax.rl import ppo


def curve(env, hp: dict, iterations: int, overrides: str, eval_every: int) -> list[dict]:
  assignments = dict(item.split("=", 1) for item in filter(None, overrides.split(",")))
  config = apply_overrides(ours_config(hp, iterations),
                           {k: ast.literal_eval(v) for k, v in assignments.items()}, where="ppo")
  learner = ppo.Learner(env, config, mesh_lib.make_mesh({"data": -1}))
  state, points = learner.init(jax.random.PRNGKey(0)), []
  for it in range(1, iterations + 1):
    state, metrics = learner.iteration(state)
    if it % eval_every == 0 or it == iterations:
      ret = learner.evaluate(state, jax.random.PRNGKey(7), hp["eval_envs"])["eval/episode_return"]
      points.append({"variant": overrides, "env_steps": it * learner.env_steps_per_iteration,
                     "eval_return": round(float(ret), 1),
                     "policy_std": round(float(metrics["policy/std"]), 3)})
      log(f"{overrides or 'as ppo_vs_brax'}: {points[-1]}")
      print(json.dumps(points[-1]), flush=True)
  return points


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--env", default="reacher")
  parser.add_argument("--num_envs", type=int, default=128)
  parser.add_argument("--unroll", type=int, default=20)
  parser.add_argument("--minibatches", type=int, default=4)
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--iterations", type=int, default=8)
  parser.add_argument("--episode_length", type=int, default=1000)
  parser.add_argument("--hidden", default="128,128")
  parser.add_argument("--eval_envs", type=int, default=16)
  parser.add_argument("--eval_every", type=int, default=5)
  parser.add_argument("--variants", default="", help="';'-separated 'key=value,...' overrides")
  args = parser.parse_args()
  env, _ = make_env(args.env, args.episode_length)
  hp = dict(num_envs=args.num_envs, unroll=args.unroll, minibatches=args.minibatches,
            epochs=args.epochs, lr=3e-4, entropy=1e-2, gamma=0.97,
            hidden=tuple(int(h) for h in args.hidden.split(",")),
            episode_length=args.episode_length, eval_envs=args.eval_envs,
            value_obs_key="privileged_state" if args.env != "reacher" else "state")
  results = {variant: curve(env, hp, args.iterations, variant, args.eval_every)
             for variant in args.variants.split(";")}
  print(json.dumps({"device": str(jax.devices()[0].device_kind), "env": args.env, "hp": hp,
                    "curves": results}, default=float))


if __name__ == "__main__":
  main()
