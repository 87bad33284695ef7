"""Closed-loop evaluation throughput: a PPO state policy rolled out on the device (jitted, batched
MJX episodes) vs the same policy served over the bridge to the native-MuJoCo robot (real time).

  python benchmarks/eval_throughput.py --checkpoint=runs/ppo_cpu --episodes=64 --served_episodes=3

The device rollout is `vlajax.eval.closed_loop.evaluate_policy` over `--episodes` states of the
run's env (compile excluded: timed on a second call); the served one is `vlajax.eval.sim_to_sim`
(websocket transport, 50 Hz control, `--seconds` of commands per episode). Prints one JSON line:
episodes/s and env steps/s for both and their ratio.
"""
from __future__ import annotations

import argparse
import json
import time

import jax

from vlajax.eval import closed_loop, job, policies, sim_to_sim
from experiments.configs import eval_policy as eval_config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--episodes", type=int, default=64)
  parser.add_argument("--episode_length", type=int, default=250)
  parser.add_argument("--served_episodes", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=5.0, help="served: seconds per episode")
  args = parser.parse_args()

  config = eval_config.get_config("ppo")
  config.policy.path = args.checkpoint
  _, env = job.make_env(config)
  policy = policies.load("ppo", env, args.checkpoint)
  run = lambda: closed_loop.evaluate_policy(env, policy, 0, args.episodes, args.episode_length,
                                            batch_size=args.episodes)
  tic = time.perf_counter()
  jax.block_until_ready(run()[0].success)
  compile_and_run = time.perf_counter() - tic
  tic = time.perf_counter()
  episodes, _ = run()
  device_s = time.perf_counter() - tic

  cfg = sim_to_sim.SimToSimConfig(checkpoint=args.checkpoint, commands=None,
                                  commands_per_episode=1, seconds_per_command=args.seconds)
  tic = time.perf_counter()
  served = sim_to_sim.run_episodes(cfg, args.served_episodes)
  served_s = time.perf_counter() - tic
  ticks = sum(e["bridge"]["ticks"] for e in served["episodes"])
  device_eps = args.episodes / device_s
  served_eps = args.served_episodes / served_s
  print(json.dumps({
      "device": {"episodes": args.episodes, "episode_length": args.episode_length,
                 "seconds": round(device_s, 2), "first_call_seconds": round(compile_and_run, 1),
                 "episodes_per_s": round(device_eps, 2),
                 "env_steps_per_s": round(float(episodes.length.sum()) / device_s, 1)},
      "served": {"episodes": args.served_episodes, "seconds": round(served_s, 2),
                 "episodes_per_s": round(served_eps, 3),
                 "control_steps_per_s": round(ticks / served_s, 1)},
      "device_over_served_episodes_per_s": round(device_eps / served_eps, 1)}))


if __name__ == "__main__":
  main()
