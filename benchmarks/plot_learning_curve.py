"""Plots a PPO run's learning curve (return and velocity-tracking error vs env steps) to a PNG.

  python benchmarks/plot_learning_curve.py runs/ppo_cpu docs/ppo_cpu_learning_curve.png

Reads `metrics.jsonl`. The tracking error is the logged `tracking/lin_vel_error` (m/s); runs from
before that metric existed fall back to the error implied by the mean tracking reward,
sqrt(-σ ln r̄) with σ = 0.25, which by Jensen's inequality is a lower bound on the RMS error.
Prints the plotted series as JSON.
"""
import json
import math
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

SIGMA = 0.25


def main(run_dir: str, out: str):
  rows = [json.loads(line) for line in (pathlib.Path(run_dir) / "metrics.jsonl").open()]
  train = [(r["env_steps"], r["episode/return"]) for r in rows if "episode/return" in r]
  evals = [(r["env_steps"], r["eval/episode_return"]) for r in rows if "eval/episode_return" in r]
  if any("tracking/lin_vel_error" in r for r in rows):
    error = [(r["env_steps"], r["tracking/lin_vel_error"]) for r in rows
             if "tracking/lin_vel_error" in r]
    label = "mean |v_xy - command| (m/s)"
  else:
    error = [(r["env_steps"], math.sqrt(-SIGMA * math.log(r["reward/tracking_lin_vel"])))
             for r in rows if r.get("reward/tracking_lin_vel", 0) > 0]
    label = "|v_xy - cmd| from tracking reward (m/s)"
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  ax1.plot(*zip(*train), label="training episodes (stochastic policy)")
  if evals:
    ax1.plot(*zip(*evals), "o-", label="evaluation (deterministic policy)")
  ax1.set_xlabel("env steps")
  ax1.set_ylabel("episode return")
  ax1.legend()
  ax2.plot(*zip(*error), color="tab:red")
  ax2.set_xlabel("env steps")
  ax2.set_ylabel(label)
  config = json.loads((pathlib.Path(run_dir) / "config.json").read_text())
  fig.suptitle(f"PPO {config['env_name']} ({config['ppo']['num_envs']} envs)")
  fig.tight_layout()
  fig.savefig(out, dpi=90)
  print(json.dumps({"train_return": train[::10], "eval_return": evals, "tracking_error": error[::10],
                    "error_metric": label}))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
