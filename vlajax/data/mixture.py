"""Per-dataset frame streams and their weighted, resumable mixture (tf.data).

Determinism and resumption without saving buffers:
- A stream's epoch e permutes its windows (stateless shuffle seeded by (seed, stream, process, e));
  block g = e * n_blocks + b holds permuted windows [b * windows_per_block, ...). A block's episodes
  are standardized, normalized and cut into frames, and the frames are fully permuted (stateless,
  seeded by the block). Each frame carries its (block, index in block).
- The mixture draws example i's dataset as stateless categorical(weights, seed=(seed, process, i)),
  so the realized proportions follow the weights and depend only on i.
- Frame transforms draw their augmentation from (seed, process, i).
So the position {example_index, per-stream (block, frame)} - a dict of ints - determines everything
that follows; resuming re-reads only the current block of each stream.

Records that do not read or decode go through the stream's `corruption.RecordGuard` (an error that
names them, or skipped and counted); every frame carries `_origin` (shard, record) so that a frame
whose image fails to decode after mixing can be traced (`DataLoader`) and its record excluded.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import tensorflow as tf

from vlajax.data import (corruption, frame_transforms, normalization, oxe_registry, rlds,
                         traj_transforms)

INT64_MAX = np.iinfo(np.int64).max


@dataclasses.dataclass
class Stream:
  """One dataset (or the VL data) as a source of frames on this host."""
  name: str
  dataset_id: int
  source: rlds.RldsSource
  windows: np.ndarray                                    # int64[N, 3] (see RldsSource.windows)
  to_frames: Callable[[tf.Tensor], dict]                  # serialized episode -> frames [N, ...]
  weight: float
  guard: corruption.RecordGuard | None = None            # None: read errors propagate as they are
  excluded: set = dataclasses.field(default_factory=set)  # (shard, record)s whose frames are dropped


def _seed(*parts: int) -> tf.Tensor:
  """A stateless seed int64[2] from several ints (stable across runs and hosts)."""
  seed = tf.constant([parts[0], 0x5EED], tf.int64)
  for p in parts[1:]:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(p, tf.int64))
  return seed


def robot_frames_fn(name: str, dataset_id: int, source: rlds.RldsSource, stats: dict, cfg
                    ) -> Callable[[tf.Tensor], dict]:
  """serialized episode -> frames: standardize, normalize, history/chunk/pad (images encoded)."""
  spec = oxe_registry.spec(name)
  proprio_mask = oxe_registry.proprio_normalize_mask(name)

  def goal_seed(serialized):
    if cfg.goal_relabel != "uniform":
      return None
    episode_hash = tf.strings.to_hash_bucket_fast(serialized, 2**62)   # same episode, same goals
    return _seed(cfg.seed, dataset_id, episode_hash)

  def fn(serialized):
    traj = oxe_registry.standardize(name, source.parse_episode(serialized))
    traj["action"] = normalization.normalize(traj["action"], stats["action"], cfg.normalization,
                                             spec.normalize_action)
    if spec.proprio:
      traj["proprio"] = normalization.normalize(traj["proprio"], stats["proprio"],
                                                cfg.normalization, proprio_mask)
    frames = traj_transforms.to_frames(
        traj, window=cfg.window, horizon=cfg.horizon, action_dim=cfg.action_dim,
        proprio_dim=cfg.proprio_dim, action_mask=spec.action_mask, frame_stride=cfg.frame_stride,
        goal_relabel=cfg.goal_relabel, goal_seed=goal_seed(serialized))
    count = tf.shape(frames["action"])[0]
    frames["dataset_id"] = tf.fill([count], tf.constant(dataset_id, tf.int32))
    return frames

  return fn


def vl_frames_fn(dataset_id: int, source: rlds.RldsSource, cfg) -> Callable[[tf.Tensor], dict]:
  """serialized (image, prompt, answer) example -> one frame; no proprio, no action (all masked)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  for key in ("image", "prompt", "answer"):
    if key not in source.features:
      raise KeyError(f"vision-language dataset '{source.name}' lacks feature '{key}' "
                     f"(has: {sorted(source.features.keys())})")
  w, h, a, p = cfg.window, cfg.horizon, cfg.action_dim, cfg.proprio_dim

  def fn(serialized):
    ex = source.features.deserialize_example(serialized,
                                             decoders={"image": tfds.decode.SkipDecoding()})
    current = tf.range(w) == w - 1
    goal = {} if cfg.goal_relabel == "none" else {"image_goal": tf.constant([[b""]])}
    return {**goal,
        "image_primary": tf.fill([1, w], ex["image"]),
        "image_wrist": tf.fill([1, w], tf.constant(b"", tf.string)),
        "timestep_pad_mask": current[None],
        "proprio": tf.zeros([1, w, p]), "proprio_mask": tf.zeros([1, w, p], tf.bool),
        "action": tf.zeros([1, h, a]), "action_pad_mask": tf.zeros([1, h, a], tf.bool),
        "instruction": ex["prompt"][None], "answer": ex["answer"][None],
        "is_robot": tf.zeros([1], tf.bool),
        "dataset_id": tf.constant([dataset_id], tf.int32),
    }

  return fn


def compute_stats(name: str, source: rlds.RldsSource, episodes_per_window: int = 64,
                  guard: corruption.RecordGuard | None = None) -> dict:
  """Action and proprio statistics of one dataset split (every episode, standardized).

  With a `guard`, an episode that does not read or decode raises `CorruptDataError` naming it, or
  (on_corrupt "skip") is left out and counted; the loader passes its `episodes_per_window`, so the
  records skipped here are the ones its reads skip (a bad record drops the rest of its window).
  """
  spec = oxe_registry.spec(name)

  def pick(ep):
    traj = oxe_registry.standardize(name, source.parse_episode(ep))
    return traj["action"], traj["proprio"]

  windows = source.windows(episodes_per_window)
  ds = corruption.map_windows(source, windows, pick, guard, tf.data.AUTOTUNE)
  actions, proprios, episodes = [], [], 0
  try:
    for (action, proprio), _ in ds.as_numpy_iterator():
      actions.append(action)
      proprios.append(proprio)
      episodes += 1
  except tf.errors.OpError as e:
    corruption.raise_from(e, [(guard, pick)])
    raise
  if not episodes:
    raise corruption.CorruptDataError(
        f"dataset '{name}' split '{source.split}': no episode could be read for statistics "
        "(all skipped as unreadable or undecodable: see the warnings)", name, source.split)
  stats = {"action": normalization.compute_stats(np.concatenate(actions), episodes)}
  if spec.proprio:
    stats["proprio"] = normalization.compute_stats(np.concatenate(proprios), episodes)
  stats["num_transitions"] = stats["action"]["num_transitions"]
  stats["num_trajectories"] = episodes
  return stats


def stream_dataset(stream: Stream, cfg, stream_index: int, process_index: int,
                   start_block: int = 0, start_frame: int = 0,
                   num_epochs: int | None = None) -> tf.data.Dataset:
  """Frames of one stream from (start_block, start_frame) on, tagged with their position."""
  n_windows = len(stream.windows)
  per_block = cfg.windows_per_block
  n_blocks = math.ceil(n_windows / per_block)
  windows = tf.constant(stream.windows)
  parallel = cfg.num_parallel_calls
  excluded = (tf.constant(sorted(stream.excluded), tf.int64) if stream.excluded else None)

  def block_frames(g):
    epoch, b = g // n_blocks, g % n_blocks
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(n_windows, dtype=tf.int64), _seed(cfg.seed, stream_index, process_index, epoch))
    ids = perm[b * per_block:(b + 1) * per_block]
    episodes = corruption.map_windows(stream.source, tf.gather(windows, ids), stream.to_frames,
                                      stream.guard, parallel)
    frames = episodes.map(_with_origin).unbatch().batch(cfg.max_block_frames)

    def permute(i, chunk):
      seed = _seed(cfg.seed, stream_index, process_index, g, i)
      count = tf.shape(chunk["action"])[0]
      order = tf.random.experimental.stateless_shuffle(tf.range(count), seed)
      return tf.nest.map_structure(lambda x: tf.gather(x, order), chunk)

    frames = frames.enumerate().map(permute).unbatch().enumerate()
    frames = frames.map(lambda k, f: {**f, "_block": g, "_frame": k})
    if excluded is not None:       # after numbering: positions stay those of the full block
      frames = frames.filter(lambda f: tf.logical_not(tf.reduce_any(tf.reduce_all(
          tf.equal(f["_origin"][None], excluded), -1))))
    return frames

  stop = INT64_MAX if num_epochs is None else n_blocks * num_epochs
  blocks = tf.data.Dataset.range(start_block, stop)
  # flat_map keeps block order; the maps inside run in parallel. (A parallel interleave with a huge
  # block_length was tried and can reserve buffers of block_length entries: tens of GB.)
  ds = blocks.flat_map(block_frames)
  if excluded is None:
    ds = ds.skip(start_frame)
  else:                            # excluded frames are gone: skip by position, not by count
    ds = ds.filter(lambda f: (f["_block"] > start_block) | (f["_frame"] >= start_frame))
  return ds.prefetch(cfg.stream_prefetch_frames)


def _with_origin(frames: dict, origin: tf.Tensor) -> dict:
  """Tags an episode's frames [N, ...] with its `_origin` int64[N, 2] (shard, record)."""
  count = tf.shape(frames["action"])[0]
  return {**frames, "_origin": tf.tile(origin[None], [count, 1])}


def mixed_frames(streams: list[Stream], cfg, process_index: int, state: dict) -> tf.data.Dataset:
  """(example index i, frame) of the weighted mixture from `state`, before frame transforms."""
  weights = np.asarray([s.weight for s in streams], np.float64)
  if np.any(weights < 0) or weights.sum() <= 0:
    raise ValueError(f"mixture weights must be >= 0 with a positive sum, got "
                     f"{dict((s.name, s.weight) for s in streams)}")
  logits = tf.constant(np.log(np.maximum(weights / weights.sum(), 1e-30)), tf.float32)[None]
  datasets = []
  for index, stream in enumerate(streams):
    pos = state["streams"][stream.name]
    datasets.append(stream_dataset(stream, cfg, index, process_index, pos["block"],
                                   pos["frame"]))
  start = state["example_index"]

  def choose(i):
    draw = tf.random.stateless_categorical(logits, 1, _seed(cfg.seed, process_index, 7, i))
    return tf.cast(draw[0, 0], tf.int64)

  choices = tf.data.Dataset.range(start, INT64_MAX).map(choose)
  return tf.data.Dataset.choose_from_datasets(datasets, choices).enumerate(start=start)


def frame_transform(cfg, process_index: int, train: bool) -> Callable[[tf.Tensor, dict], dict]:
  """(i, frame) -> frame with decoded, resized (training: augmented) images and `_index` i."""
  params = frame_transforms.Augment(
      crop_scale=tuple(cfg.crop_scale), crop_ratio=tuple(cfg.crop_ratio),
      brightness=cfg.brightness, contrast=tuple(cfg.contrast),
      saturation=tuple(cfg.saturation), hue=cfg.hue) if (train and cfg.augment) else None
  size = tuple(cfg.image_size)

  def transform(i, frame):
    seed = _seed(cfg.seed, process_index, 11, i)
    out = frame_transforms.apply(frame, size, seed, params)
    out["_index"] = i
    return out

  return transform


def mixed_dataset(streams: list[Stream], cfg, process_index: int, state: dict, train: bool,
                  local_batch: int) -> tf.data.Dataset:
  """Weighted mixture of the streams from `state`, frame transforms, batched (host-local)."""
  ds = mixed_frames(streams, cfg, process_index, state).map(
      frame_transform(cfg, process_index, train), num_parallel_calls=cfg.num_parallel_calls,
      deterministic=True)
  ds = ds.batch(local_batch, drop_remainder=True).prefetch(cfg.prefetch_batches)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = False
  return ds.with_options(options)
