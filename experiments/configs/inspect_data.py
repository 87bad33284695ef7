"""Config of `python -m experiments.inspect_data`.

  python -m experiments.inspect_data --config=experiments/configs/inspect_data.py \
      --config.data.data_root=/data/oxe --config.data.weights.kuka=0

`data` is the same section VLA training uses (`vlajax.data.config.default_config()`); datasets with
weight 0 are skipped.
"""
import ml_collections

from vlajax.data import config as data_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.data = data_config.default_config()
  c.split = "train"               # which split to inspect
  c.num_instructions = 5          # sample of distinct instructions per dataset
  c.num_batches = 1               # standardized batches drawn to report feature shapes
  c.stats_dir = ""                # statistics cache (default: a temporary directory)
  return c
