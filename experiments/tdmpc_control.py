"""Train a continuous-control policy with TD-MPC2-style model-based RL (MPPI in latent space, on-device trajectory replay).

  python -m experiments.tdmpc_control --config=experiments/configs/tdmpc_control.py:cartpole
  python -m experiments.tdmpc_control --config=experiments/configs/tdmpc_control.py:quadruped \
      --config.workdir=/tmp/tdmpc_go --config.tdmpc.mppi.num_samples=512

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events, the
library log `tdmpc_control.log` and `checkpoints/` (the replay buffer included, so a resumed run
continues bit for bit); re-running the same command resumes from the newest checkpoint
(`--config.run.resume=False` to refuse). Multi-host: pass
`--config.distributed.num_processes/process_id/coordinator_address`.
"""
from absl import app
from ml_collections import config_flags

from vlajax.core import logging_setup
from vlajax.rl import loop, tdmpc


def main(argv):
  del argv
  config = _CONFIG.value
  # Library INFO (orbax's save lines, import probes) to <workdir>/tdmpc_control.log, not the console.
  logging_setup.setup(config.workdir, process_index=config.distributed.process_id)
  loop.run_experiment(config, "tdmpc", tdmpc.Learner, "TD-MPC")


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/tdmpc_control.py:cartpole",
                                            "Experiment config file and preset name.")
  app.run(main)
