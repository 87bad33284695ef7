"""Train a (domain-randomized) locomotion policy with PPO.

  python -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:cpu
  python -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:quadruped \
      --config.workdir=/tmp/go --config.ppo.num_envs=4096

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events and
`checkpoints/`; re-running the same command resumes from the newest checkpoint (`--config.run.resume=False`
to refuse). Multi-host: pass `--config.distributed.num_processes/process_id/coordinator_address`.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.core.metrics import prepare_run_dir
from vlajax.rl import loop, ppo



def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  config = _CONFIG.value
  dist = config.distributed
  if dist.num_processes > 1:
    mesh_lib.initialize_distributed(dist.coordinator_address, dist.num_processes, dist.process_id)
  env = envs.make(config.env_name, config=config.env)
  mesh = mesh_lib.make_mesh(dict(config.mesh))
  learner = ppo.Learner(env, config.ppo, mesh, adr_config=config.adr)
  workdir = prepare_run_dir(config.workdir, config)
  print(f"PPO on {config.env_name}: {mesh.devices.size} device(s), "
        f"{learner.env_steps_per_iteration:,} env steps per iteration, run dir {workdir}")
  loop.train(learner, config.run, workdir, config.ppo.num_iterations,
             metadata={"config": config.to_dict()})


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/ppo_locomotion.py:cpu",
                                            "Experiment config file and preset name.")
  app.run(main)
