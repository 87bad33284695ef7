"""Train a continuous-control policy with SAC (on-device replay, jitted end to end).

  python -m experiments.sac_control --config=experiments/configs/sac_control.py:cartpole
  python -m experiments.sac_control --config=experiments/configs/sac_control.py:quadruped \
      --config.workdir=/tmp/sac_go --config.sac.num_envs=256

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events, the
library log `sac_control.log` and `checkpoints/` (the replay buffer included, so a resumed run
continues bit for bit); re-running the same command resumes from the newest checkpoint
(`--config.run.resume=False` to refuse). Multi-host: pass
`--config.distributed.num_processes/process_id/coordinator_address`.
"""
from absl import app
from ml_collections import config_flags

from vlajax.core import logging_setup
from vlajax.rl import loop, sac


def main(argv):
  del argv
  config = _CONFIG.value
  # Library INFO (orbax's save lines, import probes) to <workdir>/sac_control.log, not the console.
  logging_setup.setup(config.workdir, process_index=config.distributed.process_id)
  loop.run_experiment(config, "sac", sac.Learner, "SAC")


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/sac_control.py:cartpole",
                                            "Experiment config file and preset name.")
  app.run(main)
