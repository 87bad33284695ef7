"""Trajectory transforms (TF, one episode at a time, images still encoded).

Input: a standardized, normalized trajectory (`oxe_registry.standardize`), tensors with leading T.
Output of `to_frames`: one element per kept step t, with
  image_primary / image_wrist: string[W]   observation history t-W+1 .. t (clamped at 0)
  timestep_pad_mask: bool[W]                False for history steps before the episode start
  proprio: float32[W, P], proprio_mask: bool[W, P]   zero-padded to P, True on the real dims
  action: float32[H, A], action_pad_mask: bool[H, A]  chunk a_t .. a_{t+H-1}; past the end the last
                                            action is repeated and masked; padded dims masked
  instruction: string, is_robot: bool, answer: string
  image_goal: string[1]   only with goal relabeling: the primary image of a later step of the same
                          episode ("last": the final step; "uniform": uniform over t .. T-1)
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def chunk_indices(length: tf.Tensor, horizon: int) -> tuple[tf.Tensor, tf.Tensor]:
  """int32[T, H] indices min(t + k, T - 1) and bool[T, H] mask t + k < T."""
  raw = tf.range(length)[:, None] + tf.range(horizon)[None, :]
  return tf.minimum(raw, length - 1), raw < length


def history_indices(length: tf.Tensor, window: int) -> tuple[tf.Tensor, tf.Tensor]:
  """int32[T, W] indices max(t - W + 1 + j, 0) and bool[T, W] mask t - W + 1 + j >= 0."""
  raw = tf.range(length)[:, None] + tf.range(window)[None, :] - (window - 1)
  return tf.maximum(raw, 0), raw >= 0


def pad_last(x: tf.Tensor, size: int) -> tf.Tensor:
  """Zero-pads the last axis of `x` to `size`."""
  extra = size - tf.shape(x)[-1]
  paddings = tf.concat([tf.zeros([tf.rank(x) - 1, 2], tf.int32), [[0, extra]]], 0)
  return tf.pad(x, paddings)


def goal_indices(length: tf.Tensor, mode: str, seed: tf.Tensor | None = None) -> tf.Tensor:
  """int32[T] goal step per step t: T - 1 ("last") or uniform in [t, T - 1] ("uniform")."""
  if mode == "last":
    return tf.fill([length], length - 1)
  if mode == "uniform":
    u = tf.random.stateless_uniform([length], seed)
    t = tf.range(length)
    return t + tf.cast(tf.floor(u * tf.cast(length - t, tf.float32)), tf.int32)
  raise ValueError(f"unknown goal_relabel '{mode}' (valid: none, last, uniform)")


def to_frames(traj: dict[str, tf.Tensor], *, window: int, horizon: int, action_dim: int,
              proprio_dim: int, action_mask: Sequence[bool], frame_stride: int = 1,
              goal_relabel: str = "none", goal_seed: tf.Tensor | None = None
              ) -> dict[str, tf.Tensor]:
  """Frames [T', ...] of one trajectory (see module docstring); T' = ceil(T / frame_stride)."""
  length = tf.shape(traj["action"])[0]
  chunk_idx, chunk_mask = chunk_indices(length, horizon)
  hist_idx, hist_mask = history_indices(length, window)

  native_a = len(action_mask)
  action = pad_last(tf.gather(traj["action"], chunk_idx), action_dim)           # [T, H, A]
  dim_mask = tf.constant(list(action_mask) + [False] * (action_dim - native_a))
  action_pad_mask = chunk_mask[:, :, None] & dim_mask[None, None, :]

  proprio = tf.gather(traj["proprio"], hist_idx)                                # [T, W, p]
  native_p = tf.shape(traj["proprio"])[-1]
  proprio_mask = tf.broadcast_to(tf.range(proprio_dim) < native_p, [length, window, proprio_dim])
  frames = {
      "image_primary": tf.gather(traj["image_primary"], hist_idx),
      "image_wrist": tf.gather(traj["image_wrist"], hist_idx),
      "timestep_pad_mask": hist_mask,
      "proprio": pad_last(proprio, proprio_dim),
      "proprio_mask": proprio_mask,
      "action": action,
      "action_pad_mask": action_pad_mask,
      "instruction": traj["instruction"],
      "is_robot": tf.ones([length], tf.bool),
      "answer": tf.fill([length], tf.constant(b"", tf.string)),
  }
  if goal_relabel != "none":
    goals = goal_indices(length, goal_relabel, goal_seed)
    frames["image_goal"] = tf.gather(traj["image_primary"], goals)[:, None]
  if frame_stride > 1:
    frames = {k: v[::frame_stride] for k, v in frames.items()}
  return frames
