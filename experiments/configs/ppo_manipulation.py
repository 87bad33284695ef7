"""PPO presets for the tabletop arm tasks, from state (joint-delta actions):

  python -m experiments.ppo_locomotion --config=experiments/configs/ppo_manipulation.py:arm_reach

Names:
  arm_reach   the tool point to a random target (episode 100 steps, success within 3 cm); sized
              for a 2-core CPU (BENCHMARKS.md: time and closed-loop success rate).
  arm_pick    lift the cube and place it at a goal (Playground's PandaPickCube values: 2048 envs,
              unroll 10, 32 minibatches, 4 epochs, lr 1e-3, γ 0.97, entropy 2e-2, ~20M steps):
              an accelerator run.
  smoke_arm   two tiny iterations of arm_reach, for tests (SAC's and TD-MPC's `arm_reach` /
              `smoke_arm` presets share the task settings: `rl_base.arm_reach`, `rl_base.smoke_arm`).

Every preset has an `adr` section (off; `--config.adr.enabled=True`): automatic DR on the per-step
`success`, starting from the un-randomized arm (`adr.initial_ranges="nominal"`) and widening through
the env's DR ranges up to the arm's ADR bounds (`manipulation/randomization.py`).

The entry point is the shared PPO main (`experiments/ppo_locomotion.py`); evaluation reports
`eval/success_rate` (the episode-latched success) beside the return.
"""
import ml_collections

from experiments.configs import rl_base
from vlajax.rl import ppo


def _with_arm_adr(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  # ADR (off unless --config.adr.enabled=True) on the per-step success rate, widening from the
  # un-randomized arm through the env's DR ranges (the arm's bounds: manipulation/randomization.py).
  config.adr.initial_ranges = "nominal"
  return config


def _base(env_name: str) -> ml_collections.ConfigDict:
  return _with_arm_adr(rl_base.base(env_name, "ppo", ppo.default_config(), adr_metric="success"))


def get_config(name: str = "arm_reach") -> ml_collections.ConfigDict:
  presets = {"arm_reach": _arm_reach, "arm_pick": _arm_pick, "smoke_arm": _smoke_arm}
  if name not in presets:
    raise KeyError(f"unknown ppo_manipulation config '{name}' (have: {', '.join(sorted(presets))})")
  config = presets[name]()
  config.workdir = f"runs/ppo_{name}"
  return config


def _arm_reach() -> ml_collections.ConfigDict:
  config = _with_arm_adr(rl_base.arm_reach("ppo", ppo.default_config(), adr_metric="success"))
  config.ppo.update(dict(num_envs=256, unroll_length=10, num_minibatches=4, num_epochs=4,
                         gamma=0.97, learning_rate=1e-3, entropy_coef=1e-2, clip_eps=0.2,
                         policy_hidden=(128, 128), value_hidden=(128, 128),
                         num_iterations=300))
  config.run.update(dict(eval_every=25, num_eval_envs=64, checkpoint_every=50))
  return config


def _arm_pick() -> ml_collections.ConfigDict:
  config = _base("arm_pick_cube")
  config.env.episode_length = 150
  config.ppo.update(dict(num_envs=2048, unroll_length=10, num_minibatches=32, num_epochs=4,
                         gamma=0.97, learning_rate=1e-3, entropy_coef=2e-2, clip_eps=0.3,
                         policy_hidden=(32, 32, 32, 32), value_hidden=(256, 256, 256, 256, 256),
                         num_iterations=980, episode_length=150))
  config.run.update(dict(eval_every=50, num_eval_envs=128, checkpoint_every=50))
  return config


def _smoke_arm() -> ml_collections.ConfigDict:
  config = rl_base.smoke_arm(_arm_reach(), "ppo")
  config.ppo.update(dict(unroll_length=4, num_minibatches=2, num_epochs=1, policy_hidden=(16,),
                         value_hidden=(16,)))
  return config
