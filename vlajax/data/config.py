"""The `data` config section shared by VLA training and `experiments.inspect_data`.

Use as `config.data = vlajax.data.config.default_config()` and override on the command line, e.g.
`--config.data.data_root=/data/oxe --config.data.weights.bridge=1.0 --config.data.horizon=50`.
"""
from __future__ import annotations

import ml_collections

# Octo's "oxe_magic_soup" weights for the datasets our registry covers (facts, see REFERENCES).
OXE_WEIGHTS = {
    "fractal20220817_data": 0.54, "kuka": 0.8341046294, "bridge": 1.0, "taco_play": 2.0,
    "jaco_play": 1.0, "berkeley_autolab_ur5": 2.0, "toto": 1.0, "language_table": 0.1,
    "stanford_hydra_dataset_converted_externally_to_rlds": 2.0,
    "austin_buds_dataset_converted_externally_to_rlds": 1.0,
}


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data_root = ""                 # OXE download root: <data_root>/<name>/<version>/
  c.weights = ml_collections.ConfigDict(dict(OXE_WEIGHTS))  # dataset name -> sampling weight
  c.balance_weights = False        # multiply weights by each dataset's step count
  c.train_split = "train[:95%]"
  c.val_split = "train[95%:]"
  c.seed = 0
  c.global_batch_size = 32
  # Trajectory transforms.
  c.window = 1                     # observation history T
  c.horizon = 4                    # action chunk H
  c.action_dim = 32                # common padded action dim A (pi0 pads to 32)
  c.proprio_dim = 32               # common padded proprio dim P
  c.frame_stride = 1               # keep every k-th step as a training frame
  c.goal_relabel = "none"          # "none" | "last" | "uniform": adds observation.image_goal
  c.normalization = "normal"       # "normal" (z-score) | "bounds" (q01/q99 -> [-1, 1]) | "none"
  c.stats_dir = ""                 # where statistics are cached (default: the run directory)
  # A record that does not read (truncated / corrupted shard) or decode: "raise" an error naming
  # dataset, split, shard, record and feature, or "skip" it (logged, counted in the loader's
  # `corruption_report()` / `metrics()`). See `vlajax.data.corruption`.
  c.on_corrupt = "raise"
  # Frame transforms.
  c.image_size = (224, 224)
  c.augment = True                 # training only
  c.crop_scale = (0.8, 1.0)
  c.crop_ratio = (0.9, 1.1)
  c.brightness = 0.1
  c.contrast = (0.9, 1.1)
  c.saturation = (0.9, 1.1)
  c.hue = 0.05
  # Shuffling: episodes are read in windows (consecutive episodes of one file); an epoch permutes
  # windows, and `windows_per_block` windows are flattened to frames and fully shuffled together.
  # Memory is bounded by one block (encoded images) per dataset plus the prefetch buffers.
  c.episodes_per_window = 4
  c.windows_per_block = 16
  c.max_block_frames = 20000
  # Threads and buffers (host RAM grows with these: keep them bounded).
  c.num_parallel_calls = 4
  c.prefetch_batches = 2
  c.stream_prefetch_frames = 64   # per dataset
  # Vision-language co-training: a tfds dataset with image / prompt / answer features.
  c.vl_data_dir = ""
  c.vl_split = "train"
  c.vl_ratio = 0.0                 # fraction of examples drawn from the VL data
  # LeRobot v3 datasets (parquet + mp4, `vlajax.data.lerobot`), mixed like the RLDS ones: a name in
  # `weights` is read as LeRobot when `lerobot_dirs.<name>` gives its directory (or the directory
  # passed for it, or `<data_root>/<name>`, holds meta/info.json). Its cameras are chosen by feature
  # name unless `lerobot_cameras.<name> = ("observation.images.top", "observation.images.wrist")`.
  c.lerobot_dirs = ml_collections.ConfigDict()     # dataset name -> LeRobot dataset directory
  c.lerobot_cameras = ml_collections.ConfigDict()  # dataset name -> (primary, wrist or "") features
  c.lerobot_stats = "dataset"      # "dataset": its meta/stats.json | "computed": ours over the split
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  return default_config()
