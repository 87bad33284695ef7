"""The config every RL entry point shares (`loop.run_experiment` reads it).

  env_name, env          the registered env and its physics/task config
  <section>              the learner's hyperparameters (`ppo`, `sac`, `tdmpc`)
  adr                    automatic DR (`envs/adr.py`) for learners that take it (PPO), off unless
                         `--config.adr.enabled=True`
  run                    the loop's settings (`loop.run_config()`)
  workdir, mesh, distributed
  cpu_devices            XLA devices the host CPU is split into on one host (0: one per core,
                         lowered to divide the env batches; 1: XLA's single CPU device)
"""
import ml_collections

from vlajax import envs
from vlajax.envs import adr
from vlajax.rl import loop


def base(env_name: str, section: str, learner_config: ml_collections.ConfigDict,
         adr_metric: str | None = None, cpu_devices: int = 0) -> ml_collections.ConfigDict:
  """The shared config for `learner_config` under `section`; with `adr_metric` an `adr` section
  whose ranges adapt on that env metric (`loop.run_experiment` hands it to the learner)."""
  config = ml_collections.ConfigDict()
  config.env_name = env_name
  config.env = envs.default_config(env_name)
  config[section] = learner_config
  if adr_metric is not None:
    config.adr = adr.default_config()
    config.adr.performance_metric = adr_metric
  config.run = loop.run_config()
  config.workdir = f"runs/{section}_{env_name}"
  config.mesh = ml_collections.ConfigDict({"data": -1})
  config.cpu_devices = cpu_devices
  config.distributed = ml_collections.ConfigDict(
      {"coordinator_address": "", "num_processes": 1, "process_id": 0})
  return config
