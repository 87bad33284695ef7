"""Train a continuous-control policy with SAC (on-device replay, jitted end to end).

  python -m experiments.sac_control --config=experiments/configs/sac_control.py:cartpole
  python -m experiments.sac_control --config=experiments/configs/sac_control.py:quadruped \
      --config.workdir=/tmp/sac_go --config.sac.num_envs=256

The run directory (`config.workdir`) gets `config.json`, `metrics.jsonl`, TensorBoard events and
`checkpoints/` (the replay buffer included, so a resumed run continues bit for bit); re-running the
same command resumes from the newest checkpoint (`--config.run.resume=False` to refuse).
Multi-host: pass `--config.distributed.num_processes/process_id/coordinator_address`.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.core.metrics import prepare_run_dir
from vlajax.rl import loop, sac



def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  config = _CONFIG.value
  dist = config.distributed
  if dist.num_processes > 1:
    mesh_lib.initialize_distributed(dist.coordinator_address, dist.num_processes, dist.process_id)
  env = envs.make(config.env_name, config=config.env)
  mesh = mesh_lib.make_mesh(dict(config.mesh))
  learner = sac.Learner(env, config.sac, mesh)
  workdir = prepare_run_dir(config.workdir, config)
  print(f"SAC on {config.env_name}: {mesh.devices.size} device(s), "
        f"{learner.env_steps_per_iteration:,} env steps per iteration, run dir {workdir}")
  loop.train(learner, config.run, workdir, config.sac.num_iterations,
             metadata={"config": config.to_dict()})


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/sac_control.py:cartpole",
                                            "Experiment config file and preset name.")
  app.run(main)
