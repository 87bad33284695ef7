"""Shared helpers for the tests/test_data_*.py files: real RLDS directories written with tfds.

Datasets are written once per test session (cached by arguments) under a temporary root, in the
on-disk layout of the OXE copies (`vlajax.data.oxe_specs`) with 32x40 images. Every step's
instruction (where the dataset has one) is "<name> ep<k> t<t>", so a frame names its origin.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

import numpy as np

from vlajax.data import config as data_config
from vlajax.data import oxe_specs, writer

IMAGE = (32, 40)
_ROOT = tempfile.mkdtemp(prefix="vlajax_data_tests_")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)

# Per-step instruction key per dataset ("" = none on disk / not per-step text).
INSTRUCTION_KEY = {
    "fractal20220817_data": ("observation", "natural_language_instruction"),
    "kuka": ("observation", "natural_language_instruction"),
    "bridge": ("observation", "natural_language_instruction"),
    "taco_play": ("observation", "natural_language_instruction"),
    "jaco_play": ("observation", "natural_language_instruction"),
    "berkeley_autolab_ur5": ("observation", "natural_language_instruction"),
    "toto": ("observation", "natural_language_instruction"),
    "stanford_hydra_dataset_converted_externally_to_rlds": ("language_instruction",),
    "austin_buds_dataset_converted_externally_to_rlds": ("language_instruction",),
}


def tagged_episode(name: str, k: int, length: int, rng: np.random.Generator) -> dict:
  episode = oxe_specs.random_episode(name, length, rng, image_size=IMAGE)
  steps = episode["steps"]
  texts = [f"{name} ep{k} t{t}" for t in range(length)]
  if name == "language_table":
    codes = np.zeros((length, 512), np.int32)
    for t, text in enumerate(texts):
      codes[t, :len(text)] = [ord(c) for c in text]
    steps["observation"]["instruction"] = codes
  else:
    node = steps
    *parents, leaf = INSTRUCTION_KEY[name]
    for p in parents:
      node = node[p]
    node[leaf] = [t.encode() for t in texts]
  return episode


@functools.lru_cache(maxsize=None)
def oxe_root(names: tuple[str, ...], episodes: int = 8, min_len: int = 3, max_len: int = 7,
             num_shards: int = 2, seed: int = 0) -> str:
  """A data_root with `names` written in their OXE layout; returns the root."""
  root = os.path.join(_ROOT, f"oxe_{abs(hash((names, episodes, min_len, max_len, num_shards, seed)))}")
  rng = np.random.default_rng(seed)
  for name in names:
    eps = [tagged_episode(name, k, int(rng.integers(min_len, max_len + 1)), rng)
           for k in range(episodes)]
    writer.write_rlds(root, name, {"train": eps},
                      features=oxe_specs.tfds_features(name, IMAGE, image_format="png"),
                      num_shards=num_shards)
  return root


def stats_dir() -> str:
  path = os.path.join(_ROOT, "stats")
  os.makedirs(path, exist_ok=True)
  return path


def small_config(root: str, weights: dict, **overrides):
  cfg = data_config.default_config()
  cfg.data_root = root
  cfg.weights = dict(weights)
  cfg.train_split = "train"
  cfg.val_split = "train"
  cfg.image_size = (16, 16)
  cfg.global_batch_size = 8
  cfg.action_dim = 8
  cfg.proprio_dim = 8
  cfg.horizon = 3
  cfg.episodes_per_window = 2
  cfg.windows_per_block = 2
  cfg.num_parallel_calls = 2
  for key, value in overrides.items():
    cfg[key] = value
  return cfg


def origin(instruction: bytes) -> tuple[str, int, int]:
  """(dataset, episode, step) from a tagged instruction."""
  name, ep, t = instruction.decode().rsplit(" ", 2)
  return name, int(ep[2:]), int(t[1:])
