"""Closed-loop evaluation of a policy on fixed seeded initial states, with a report and videos.

  python -m experiments.eval_policy --config=experiments/configs/eval_policy.py:ppo \
      --config.policy.path=runs/ppo_cpu --config.num_episodes=100
  python -m experiments.eval_policy --config=experiments/configs/eval_policy.py:scripted \
      --config.env_name=arm_pick_cube --config.compare.kind=random

Writes `report.json`, `report.md`, TensorBoard scalars, `videos/*.mp4` and the library log
`eval_policy.log` to `config.out_dir` (with a comparison: `a/`, `b/` and `comparison.md`) and prints
the markdown table (and the verdict).
"""
import os

# Videos render headless through EGL unless told otherwise; must precede mujoco's first import.
if not os.environ.get("DISPLAY"):
  os.environ.setdefault("MUJOCO_GL", "egl")

# pylint: disable=wrong-import-position
from absl import app
from ml_collections import config_flags

from vlajax.core import logging_setup
from vlajax.eval import job, report


def main(argv):
  del argv
  config = _CONFIG.value
  logging_setup.setup(config.out_dir)   # library INFO to <out_dir>/eval_policy.log
  result = job.run(config)
  print(report.markdown(result), flush=True)
  if "comparison" in result:
    print(result["comparison"]["verdict"], flush=True)


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/eval_policy.py:scripted",
                                            "Evaluation config file and preset name.")
  app.run(main)
