"""Prints, as JSON, what the data pipeline makes of each dataset in a data config.

  python -m experiments.inspect_data --config=experiments/configs/inspect_data.py \
      --config.data.data_root=/path/to/oxe

Per dataset: episodes, steps, standardized feature shapes and dtypes (one real batch of that
dataset alone), action/proprio statistics, a sample of instructions and `corruption`: the records
and shards skipped as unreadable or undecodable with `--config.data.on_corrupt=skip` (with the
default "raise" the first such record stops it with an error naming it).
"""
from __future__ import annotations

import json
import sys
import tempfile

from absl import app
from ml_collections import config_flags



def _shapes(tree):
  import numpy as np  # pylint: disable=g-import-not-at-top
  if isinstance(tree, dict):
    return {k: _shapes(v) for k, v in tree.items()}
  array = np.asarray(tree)
  return {"shape": list(array.shape), "dtype": str(array.dtype)}


def inspect(config) -> dict:
  """The report for `config` (see module docstring) as a dict."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from vlajax.data import loader as loader_lib  # pylint: disable=g-import-not-at-top
  from vlajax.data import oxe_registry  # pylint: disable=g-import-not-at-top

  stats_dir = config.stats_dir or config.data.stats_dir or tempfile.mkdtemp(prefix="stats_")
  report = {}
  names = sorted(k for k, v in config.data.weights.items() if float(v) > 0)
  for name in names:
    cfg = ml_collections.ConfigDict(config.data.to_dict())
    cfg.weights = {name: 1.0}
    cfg.vl_ratio = 0.0
    cfg.augment = False
    cfg.train_split = config.split
    loader = loader_lib.DataLoader(cfg, train=True, stats_dir=stats_dir, process_index=0,
                                   process_count=1)
    batch = None
    for _ in range(config.num_batches):
      batch = loader.next_local()
    stream = loader.streams[0]
    lerobot = name in loader.lerobot_dirs
    instructions = []
    if lerobot:   # a LeRobot v3 dataset: its episodes' task strings
      texts = (t.decode() for p in range(stream.source.num_episodes)
               for t in stream.source.episode(p)["instruction"])
    else:         # RLDS, at the loader's window size (a bad record costs the same records here)
      texts = (oxe_registry.standardize(name, episode)["instruction"].numpy()[0].decode()
               for episode in stream.source.episodes(cfg.episodes_per_window, guard=stream.guard))
    for text in texts:
      if text not in instructions:
        instructions.append(text)
      if len(instructions) >= config.num_instructions:
        break
    stats = loader.stats[name]
    dims = loader.normalization_spec(name)
    report[name] = {
        "directory": stream.source.directory,
        "episodes": stream.source.num_episodes,
        "steps": stats["num_transitions"],
        "action_space": "lerobot" if lerobot else oxe_registry.spec(name).action_space,
        "native_action_dim": dims["action_dim"],
        "native_proprio_dim": dims["proprio_dim"],
        "features": _shapes({k: v for k, v in batch.items()
                             if k not in ("instruction", "answer", "dataset_name")}),
        "statistics": {k: {s: v[s] for s in ("mean", "std", "min", "max", "q01", "q99")}
                       for k, v in stats.items() if k in ("action", "proprio")},
        "instructions": instructions,
        "corruption": loader.corruption_report()["datasets"].get(name),
    }
  return report


def main(argv):
  del argv
  from vlajax.core import logging_setup  # pylint: disable=g-import-not-at-top
  logging_setup.setup(None)   # no run directory: library INFO stays off the console
  json.dump(inspect(_CONFIG.value), sys.stdout, indent=1)
  sys.stdout.write("\n")


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", None, "inspect_data config file.")
  app.run(main)
