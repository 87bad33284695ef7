"""Train a continuous-control policy with SAC (on-device replay, jitted end to end).

  python -m experiments.sac_control --config=experiments/configs/sac_control.py:cartpole
  python -m experiments.sac_control --config=experiments/configs/sac_control.py:quadruped \
      --config.workdir=/tmp/sac_go --config.sac.num_envs=256

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events and
`checkpoints/` (the replay buffer included, so a resumed run continues bit for bit); re-running the
same command resumes from the newest checkpoint (`--config.run.resume=False` to refuse).
Multi-host: pass `--config.distributed.num_processes/process_id/coordinator_address`.
"""
from absl import app, logging
from ml_collections import config_flags

from vlajax.rl import loop, sac


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  loop.run_experiment(_CONFIG.value, "sac", sac.Learner, "SAC")


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/sac_control.py:cartpole",
                                            "Experiment config file and preset name.")
  app.run(main)
