"""Train an action head (regression, ACT, diffusion, flow) on demonstrations, by the library loop.

  python -m experiments.train_policy --config=experiments/configs/train_policy.py:diffusion \
      --config.data.dataset_dir=runs/demos/sim_arm_pick_cube/0.1.0 --config.workdir=runs/dp_pick

The run directory gets `config.json`, `policy.json` (what `eval.policies.load("chunk", ...)` needs:
head, shapes, the dataset's normalization statistics, the env), `metrics.jsonl`, TensorBoard
events, the library log `train_policy.log` and `checkpoints/`; the same command resumes from the
newest checkpoint.
"""
from __future__ import annotations

import json

from absl import app
from ml_collections import config_flags

from vlajax.core import logging_setup
from vlajax.core import mesh as mesh_lib
from vlajax.core.metrics import prepare_run_dir
from vlajax.imitation import policy as policy_lib


def main(argv):
  del argv
  config = _CONFIG.value
  logging_setup.setup(config.workdir)   # library INFO to <workdir>/train_policy.log
  run_dir = prepare_run_dir(config.workdir, config)
  mesh = mesh_lib.make_mesh({"data": -1})
  result = policy_lib.train(config, run_dir, mesh)
  print(json.dumps({"final_loss": result["final_loss"], "eval": result["eval"],
                    "param_count": result["param_count"], "run_dir": str(run_dir)}), flush=True)


if __name__ == "__main__":
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/train_policy.py:diffusion",
                                            "Policy training config file and preset name.")
  app.run(main)
