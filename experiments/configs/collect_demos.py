"""Configs for `python -m experiments.collect_demos --config=experiments/configs/collect_demos.py:<name>`.

Names (a task; every key can be overridden):
  arm_pick_cube      200 episodes of the scripted pick expert, primary + wrist cameras at 64 px
  tabletop_language  300 episodes over the training instructions (`split=train`), same cameras
  arm_reach          100 episodes of the reach expert
  smoke              4 reach episodes at 32 px, 60 steps (CI-sized)

The env runs in the `ee_delta` action space (the OXE / VLA form; `env_overrides`); the dataset is
written to `<data_dir>/<dataset_name>/0.1.0` with `demo_info.json` (`vlajax.imitation.collect`).
`demonstrator.kind`: scripted (the task's expert) or ppo (a trained state policy at
`demonstrator.path`, trained in the same action space).
"""
import ml_collections

PRESETS = {  # name: (env, episodes, episode length (0: the env's), image size)
    "arm_pick_cube": ("arm_pick_cube", 200, 0, 64),
    "tabletop_language": ("tabletop_language", 300, 0, 64),
    "arm_reach": ("arm_reach", 100, 0, 64),
    "smoke": ("arm_reach", 4, 60, 32),
}


def get_config(name: str = "arm_pick_cube") -> ml_collections.ConfigDict:
  if name not in PRESETS:
    raise KeyError(f"unknown collect_demos config '{name}' (have: {', '.join(sorted(PRESETS))})")
  env_name, episodes, length, size = PRESETS[name]
  config = ml_collections.ConfigDict()
  config.env_name = env_name
  config.env_overrides = "action_space=ee_delta"   # "key=value,..." of the env's config
  config.demonstrator = ml_collections.ConfigDict({"kind": "scripted", "path": "", "step": -1})
  config.num_episodes = episodes
  config.seed = 0                  # the demos' initial states (never an eval set's: see collect.py)
  config.max_attempts = 0          # 0: 4 x num_episodes
  config.batch_size = 16 if name != "smoke" else 4
  config.episode_length = length
  config.steps_after_success = 10
  config.keep_failures = False
  config.action_noise = 0.0        # std of the noise added to executed actions (labels stay clean)
  config.cameras = "primary,wrist"
  config.image_size = size
  config.visual_randomization = False
  config.data_dir = "runs/demos"
  config.dataset_name = f"sim_{env_name}" if name != "smoke" else "sim_smoke"
  config.val_fraction = 0.1 if name != "smoke" else 0.25
  return config
