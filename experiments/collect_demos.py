"""Demonstrations from a manipulation task's expert, written as an RLDS dataset.

  python -m experiments.collect_demos --config=experiments/configs/collect_demos.py:arm_pick_cube
  python -m experiments.collect_demos --config=experiments/configs/collect_demos.py:tabletop_language \
      --config.num_episodes=50 --config.action_noise=0.1

Prints progress per batch and, at the end, the summary (`demo_info.json` beside the dataset). The
dataset is read by `vlajax.data` (`collect.register(collect.read_info(directory))`).
"""
import json
import os
import time

# Cameras render headless through EGL unless told otherwise; must precede mujoco's first import.
if not os.environ.get("DISPLAY"):
  os.environ.setdefault("MUJOCO_GL", "egl")

# pylint: disable=wrong-import-position
from absl import app
from ml_collections import config_flags

from vlajax import envs
from vlajax.core import logging_setup
from vlajax.imitation import collect
from vlajax.eval import job, policies


def run(config) -> dict:
  """Collects and writes the dataset of `config`; returns its `demo_info`."""
  env = envs.make(config.env_name, **job.parse_overrides(config.env_overrides))
  kind = config.demonstrator.kind
  if kind not in ("scripted", "ppo"):
    raise ValueError(f"demonstrator.kind must be 'scripted' or 'ppo', got {kind!r}")
  step = None if config.demonstrator.step < 0 else config.demonstrator.step
  demonstrator = policies.load(kind, env, path=config.demonstrator.path or None, step=step)
  settings = collect.CollectConfig(
      num_episodes=config.num_episodes, seed=config.seed,
      max_attempts=config.max_attempts or None, batch_size=config.batch_size,
      episode_length=config.episode_length or None,
      steps_after_success=config.steps_after_success, keep_failures=config.keep_failures,
      action_noise=config.action_noise, cameras=tuple(config.cameras.split(",")),
      image_size=config.image_size, visual_randomization=config.visual_randomization)
  tic = time.perf_counter()
  last = {}

  def progress(counts):
    last.update(counts)
    rate = counts["kept"] / max(counts["elapsed_s"], 1e-9)
    eta = (config.num_episodes - counts["kept"]) / rate if rate > 0 else float("inf")
    print(f"[{counts['elapsed_s']:7.1f}s] kept {counts['kept']}/{config.num_episodes} "
          f"(successes {counts['successes']} of {counts['attempted']} attempted), "
          f"{counts['frames']} frames, ETA {eta:.0f} s", flush=True)

  episodes = collect.episodes(env, demonstrator, settings, progress=progress)
  extra = lambda: {"attempted": last["attempted"], "demonstrator_successes": last["successes"],
                   "demonstrator": config.demonstrator.to_dict(),
                   "wall_s": time.perf_counter() - tic}
  return collect.write(episodes, config.data_dir, config.dataset_name, env, settings,
                       env_name=config.env_name, val_fraction=config.val_fraction,
                       extra_info=extra)


def main(argv):
  del argv
  config = _CONFIG.value
  # Library INFO to <data_dir>/<dataset_name>/collect_demos.log (beside the version directory).
  logging_setup.setup(os.path.join(config.data_dir, config.dataset_name))
  print(json.dumps(run(config), indent=1, default=str), flush=True)


if __name__ == "__main__":
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "experiments/configs/collect_demos.py:arm_pick_cube",
      "Demo collection config file and preset name.")
  app.run(main)
