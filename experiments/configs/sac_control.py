"""Configs for `python -m experiments.sac_control --config=experiments/configs/sac_control.py:<name>`.

Names:
  quadruped  accelerator-scale Go1 joystick (Playground's DMC SAC values: 128 envs, batch 512, 8
             gradient updates per batched env step, replay 4M, min replay 8192, lr 1e-3, γ 0.99,
             τ 0.005, LayerNorm critics, observation normalization).
  cartpole   cart-pole balance (episode length 200 env steps, as PPO's `cartpole`) with action
             repeat 2 (100 control steps), 1 gradient update per env step, 512 seed transitions
             and target τ 0.05: solved (≈ 190 of ≈ 198) in 3.2k env steps, under a minute of
             training on a CPU. The settings are TD-MPC's `cartpole` ones (BENCHMARKS.md).
  arm_reach  the arm's tool point to a random target from state (joint-delta actions, 100-step
             episodes, the env's DR on; the task settings are PPO's `arm_reach`,
             `rl_base.arm_reach`): 32 envs, UTD 0.25 (8 updates per batched step), batch 256,
             replay 256k, 2,048 seed transitions, γ 0.97 (PPO's for this task), MLPs 128-128, an
             asymmetric critic on `privileged_state`, 160k env steps. CPU-sized starting values,
             not yet tuned or measured (BENCHMARKS.md records PPO on this task).
  smoke      a few tiny iterations on cart-pole, for tests.
  smoke_arm  two tiny iterations of arm_reach (`rl_base.smoke_arm`, the learner at `smoke`'s
             sizes), for tests.

Env physics/task config (`config.env`) and learner config (`config.sac`) are separate; any key can
be overridden on the command line, e.g. `--config.sac.grad_updates_per_step=4`.
"""
import ml_collections

from experiments.configs import rl_base
from vlajax.rl import sac


def _base(env_name: str) -> ml_collections.ConfigDict:
  # One CPU device: the off-policy learners' small env batches were measured unsplit.
  return rl_base.base(env_name, "sac", sac.default_config(), cpu_devices=1)


def get_config(name: str = "cartpole") -> ml_collections.ConfigDict:
  presets = {"quadruped": _quadruped, "cartpole": _cartpole, "arm_reach": _arm_reach,
             "smoke": _smoke, "smoke_arm": _smoke_arm}
  if name not in presets:
    raise KeyError(f"unknown sac_control config '{name}' (have: {', '.join(sorted(presets))})")
  config = presets[name]()
  config.workdir = f"runs/sac_{name}"
  return config


def _quadruped() -> ml_collections.ConfigDict:
  config = _base("quadruped_joystick")
  config.sac.update(dict(num_envs=128, batch_size=512, grad_updates_per_step=8,
                         replay_capacity=4_194_304, min_replay=8192, learning_rate=1e-3,
                         gamma=0.99, tau=0.005, critic_layer_norm=True, episode_length=1000,
                         steps_per_iteration=100, num_iterations=400,
                         actor_hidden=(256, 256, 256), critic_hidden=(256, 256, 256),
                         critic_obs_key="privileged_state"))
  config.run.update(dict(eval_every=20, num_eval_envs=128, checkpoint_every=20))
  return config


def _cartpole() -> ml_collections.ConfigDict:
  config = _base("cartpole")
  config.env.episode_length = 200
  # Each of action repeat 2, 32 updates per batched control step (UTD 1 per env step), 512 seed
  # transitions and τ 0.05 (brax's default 0.005) helps; together, 5 seeds at 1.6k / 3.2k / 4.8k /
  # 6.4k env steps: 125 / 193 / 195 / 197, against 55 / 60 / 71 / 103 with the earlier preset
  # (16 envs, UTD 0.5, 1,024 seed transitions, τ 0.005, no repeat) (BENCHMARKS.md).
  config.sac.update(dict(num_envs=16, batch_size=256, grad_updates_per_step=32, action_repeat=2,
                         replay_capacity=65_536, min_replay=512, learning_rate=1e-3,
                         gamma=0.99, tau=0.05, episode_length=100, steps_per_iteration=50,
                         num_iterations=4, actor_hidden=(64, 64), critic_hidden=(64, 64)))
  config.run.update(dict(eval_every=1, num_eval_envs=32, checkpoint_every=2))
  return config


def _arm_reach() -> ml_collections.ConfigDict:
  config = rl_base.arm_reach("sac", sac.default_config(), cpu_devices=1)
  config.sac.update(dict(num_envs=32, batch_size=256, grad_updates_per_step=8,
                         replay_capacity=262_144, min_replay=2048, learning_rate=1e-3, gamma=0.97,
                         tau=0.005, steps_per_iteration=50, num_iterations=100,
                         actor_hidden=(128, 128), critic_hidden=(128, 128),
                         critic_obs_key="privileged_state"))
  config.run.update(dict(eval_every=20, num_eval_envs=64, checkpoint_every=20))
  return config


# The smoke presets' learner: tiny networks, batches and replay (learning starts in iteration 1).
_SMOKE_SAC = dict(batch_size=32, grad_updates_per_step=2, replay_capacity=512, min_replay=32,
                  steps_per_iteration=8, actor_hidden=(16,), critic_hidden=(16,))


def _smoke() -> ml_collections.ConfigDict:
  config = _cartpole()
  config.sac.update(dict(_SMOKE_SAC, num_envs=8, action_repeat=1, tau=0.005, num_iterations=6,
                         episode_length=20))
  config.run.update(dict(eval_every=3, num_eval_envs=4, checkpoint_every=2))
  return config


def _smoke_arm() -> ml_collections.ConfigDict:
  config = rl_base.smoke_arm(_arm_reach(), "sac")
  config.sac.update(_SMOKE_SAC)
  return config
