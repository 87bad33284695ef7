"""Reading RLDS datasets written by tfds: episode windows, per-host shards, parsing.

An `RldsSource` opens a tfds dataset directory (`tfds.builder_from_directory`) and a split (any tfds
split string, e.g. "train", "train[:95%]"). Episodes are addressed as *windows*: runs of up to
`episodes_per_window` consecutive episodes inside one TFRecord file, read with
`TFRecordDataset(file).skip(start).take(count)`. Windows never cross files, so assigning windows to
hosts (`window_index % process_count == process_index`) is file-local, disjoint and covers the split.

`parse_episode` turns one serialized episode into `{"steps": {key: Tensor[T, ...]}, ...}` with images
left encoded (decoded later, after shuffling and mixing) and tfds zlib/bytes-encoded tensors decoded
(the kuka proprioception is stored that way). Records that do not read or decode are named or
skipped by `vlajax.data.corruption` (`episodes(guard=...)`).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vlajax.data import corruption


def resolve_dataset_dir(path_or_root: str, name: str | None = None) -> str:
  """The tfds version directory for a dataset.

  Accepts the version directory itself (`.../bridge/0.1.0`), a dataset directory holding version
  subdirectories (the newest is taken), or a root (`data_root`) plus `name` as in an OXE download
  (`data_root/<name>/<version>`).
  """
  path = os.path.join(path_or_root, name) if name else path_or_root
  if os.path.exists(os.path.join(path, "dataset_info.json")):
    return path
  if not os.path.isdir(path):
    raise FileNotFoundError(f"dataset directory not found: '{path}'"
                            + (f" (dataset '{name}' under data_root '{path_or_root}')" if name else ""))
  versions = [v for v in os.listdir(path)
              if os.path.exists(os.path.join(path, v, "dataset_info.json"))]
  if not versions:
    raise FileNotFoundError(f"no tfds dataset (dataset_info.json) under '{path}'")
  versions.sort(key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))
  return os.path.join(path, versions[-1])


class RldsSource:
  """An RLDS split on disk: its files, episode windows and parser."""

  def __init__(self, directory: str, split: str = "train", require_steps: bool = True):
    self.directory = directory
    self.builder = tfds.builder_from_directory(directory)
    self.name = self.builder.info.name
    self.split = split
    self.features = self.builder.info.features
    if require_steps and "steps" not in self.features:
      raise KeyError(f"dataset '{self.name}' at '{directory}' is not RLDS: no 'steps' feature "
                     f"(features: {sorted(self.features.keys())})")
    try:
      instructions = self.builder.info.splits[split].file_instructions
    except (KeyError, ValueError) as e:
      raise KeyError(f"dataset '{self.name}': unknown split '{split}' "
                     f"(available: {sorted(self.builder.info.splits.keys())})") from e
    self.files = [os.fspath(fi.filename) for fi in instructions]
    self._ranges = [(i, int(fi.skip), int(fi.take)) for i, fi in enumerate(instructions)]
    self.num_episodes = sum(take for _, _, take in self._ranges)
    if self.num_episodes == 0:
      raise ValueError(f"dataset '{self.name}': split '{split}' has no episodes")

  def windows(self, episodes_per_window: int, process_index: int = 0,
              process_count: int = 1) -> np.ndarray:
    """int64[N, 3] rows (file index, first episode in file, episode count) for this host."""
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    rows = []
    for file_index, skip, take in self._ranges:
      for start in range(skip, skip + take, episodes_per_window):
        rows.append((file_index, start, min(episodes_per_window, skip + take - start)))
    mine = rows[process_index::process_count]
    if not mine:
      raise ValueError(f"dataset '{self.name}' split '{self.split}': {len(rows)} windows of "
                       f"{episodes_per_window} episodes cannot feed {process_count} processes; "
                       "lower episodes_per_window")
    return np.asarray(mine, np.int64).reshape(-1, 3)

  def read_windows(self, windows: tf.Tensor) -> tf.data.Dataset:
    """Serialized episodes of the given windows (int64[N, 3]), in order."""
    return tf.data.Dataset.from_tensor_slices(windows).flat_map(self.read_window)

  def read_window(self, window: tf.Tensor) -> tf.data.Dataset:
    """Serialized episodes of one window (int64[3]: file index, first episode, count)."""
    records = tf.data.TFRecordDataset(tf.constant(self.files)[window[0]])
    return records.skip(window[1]).take(window[2])

  def parse_episode(self, serialized: tf.Tensor) -> dict[str, Any]:
    """`{"steps": {key: Tensor[T, ...]}, <episode fields>}`; images stay encoded bytes."""
    decoders = {"steps": tfds.decode.SkipDecoding()}
    episode = self.features.deserialize_example(serialized, decoders=decoders)
    episode = dict(episode)
    episode["steps"] = _decode_encoded_tensors(episode["steps"], self.features["steps"].feature)
    return episode

  def episodes(self, episodes_per_window: int = 16,
               guard: corruption.RecordGuard | None = None) -> tf.data.Dataset:
    """Every episode of the split, parsed, in file order (for statistics and inspection).

    With a `guard`, episodes that do not read or parse raise its error or are skipped and counted.
    """
    windows = tf.constant(self.windows(episodes_per_window))
    if guard is None:
      return self.read_windows(windows).map(self.parse_episode)
    return corruption.map_windows(self, windows, self.parse_episode, guard).map(
        lambda episode, origin: episode)


def _decode_encoded_tensors(steps, feature, path: str = "steps"):
  """Decodes tfds Tensor features stored compressed (zlib / gzip / raw bytes) in a steps dict.

  With decoding skipped a feature of `Tensor(..., encoding=ZLIB | BYTES)` arrives as string[T] of
  (compressed) raw bytes: it becomes dtype[T, *shape], as tfds decodes it. A feature that arrives
  decoded already is returned as is. Errors name the feature (`corruption.decoding`).
  """
  if isinstance(feature, tfds.features.FeaturesDict):
    return {k: _decode_encoded_tensors(steps[k], feature[k], f"{path}/{k}") if k in feature
            else steps[k] for k in steps}
  if isinstance(feature, tfds.features.Tensor) and not isinstance(
      feature, (tfds.features.Image, tfds.features.Text)):
    encoding = getattr(feature, "_encoding", tfds.features.Encoding.NONE)
    if encoding != tfds.features.Encoding.NONE and steps.dtype == tf.string:
      compression = {"zlib": "ZLIB", "gzip": "GZIP"}.get(str(getattr(encoding, "value", "")), "")
      shape = [-1 if d is None else int(d) for d in feature.shape]
      dtype = tf.as_dtype(feature.dtype)
      raw_dtype = tf.int64 if dtype == tf.uint64 else dtype  # tfds stores uint64 as int64 bytes
      with corruption.decoding(path):
        raw = tf.io.decode_compressed(steps, compression_type=compression) if compression else steps
        values = tf.io.decode_raw(raw, raw_dtype)             # [T, n] (every step's n is equal)
        values = tf.bitcast(values, tf.uint64) if dtype == tf.uint64 else values
        return tf.reshape(values, [tf.shape(steps)[0], *shape])
  return steps
