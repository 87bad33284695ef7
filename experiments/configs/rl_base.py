"""The config every RL entry point shares (`loop.run_experiment` reads it).

  env_name, env          the registered env and its physics/task config
  <section>              the learner's hyperparameters (`ppo`, `sac`, `tdmpc`)
  adr                    automatic DR (`envs/adr.py`) for learners that take it (PPO), off unless
                         `--config.adr.enabled=True`; `adr.bounds` / `adr.steps` are the env's
                         (`envs.default_adr_config(env_name)`), each settable on the command line
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
    env_adr = envs.default_adr_config(env_name)
    config.adr.bounds, config.adr.steps = env_adr.bounds, env_adr.steps
    config.adr.performance_metric = adr_metric
  config.run = loop.run_config()
  config.workdir = f"runs/{section}_{env_name}"
  config.mesh = ml_collections.ConfigDict({"data": -1})
  config.cpu_devices = cpu_devices
  config.distributed = ml_collections.ConfigDict(
      {"coordinator_address": "", "num_processes": 1, "process_id": 0})
  return config


# The arm presets every learner shares (`ppo_manipulation.py`, `sac_control.py`, `tdmpc_control.py`).
ARM_REACH_EPISODE_LENGTH = 100   # control steps (2 s at 50 Hz): the tool point within 3 cm of the target
SMOKE_ARM = {"num_envs": 8, "num_iterations": 2, "episode_length": 20}


def arm_reach(section: str, learner_config: ml_collections.ConfigDict,
              **kwargs) -> ml_collections.ConfigDict:
  """`base` on `arm_reach` from state (`obs["state"]`, joint-delta actions) with the arm presets'
  episode length; the learner's hyperparameters are the caller's."""
  config = base("arm_reach", section, learner_config, **kwargs)
  config[section].episode_length = ARM_REACH_EPISODE_LENGTH
  return config


def smoke_arm(config: ml_collections.ConfigDict, section: str) -> ml_collections.ConfigDict:
  """`config` (an arm preset) shrunk to the `smoke_arm` size: 8 envs, 2 iterations of 20-step
  episodes (the env's and the learner's), evaluated at the end on 4 envs, no intermediate
  checkpoint; the caller shrinks the networks and the learner's own batch sizes."""
  config.env.episode_length = SMOKE_ARM["episode_length"]
  config[section].update(SMOKE_ARM)
  config.run.update(dict(eval_every=SMOKE_ARM["num_iterations"], num_eval_envs=4,
                         checkpoint_every=0))
  return config
