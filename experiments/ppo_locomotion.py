"""Train a (domain-randomized) locomotion policy with PPO.

  python -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:cpu
  python -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:quadruped \
      --config.workdir=/tmp/go --config.ppo.num_envs=4096

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events, the
library log `ppo_locomotion.log` and `checkpoints/`; re-running the same command resumes from the
newest checkpoint (`--config.run.resume=False` to refuse). Multi-host: pass
`--config.distributed.num_processes/process_id/coordinator_address`.
"""
from absl import app
from ml_collections import config_flags

from vlajax.core import logging_setup
from vlajax.rl import loop, ppo


def main(argv):
  del argv
  config = _CONFIG.value
  # Library INFO (orbax's save lines, import probes) to <workdir>/ppo_locomotion.log, not the console.
  logging_setup.setup(config.workdir, process_index=config.distributed.process_id)
  loop.run_experiment(config, "ppo", ppo.Learner, "PPO")


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/ppo_locomotion.py:cpu",
                                            "Experiment config file and preset name.")
  app.run(main)
