"""On-device replay for off-policy learners: a circular buffer laid out time × env.

Every leaf of `Replay.data` has shape `[rows, num_envs, ...]`: one row per batched env step, one
column per parallel env. With the env axis sharded over the mesh axis `data` (`sharding(mesh)`),
each device stores, writes and samples only its own envs' columns:

  insert    one row `[num_envs, ...]` written at `cursor` with `lax.dynamic_update_slice`
            (O(row), never O(capacity); the oldest row is overwritten once the buffer is full)
  sample    `per_env` independent rows for every column (`[per_env, num_envs, ...]`), drawn
            uniformly from the rows written so far; the gather runs along each local column
  windows   `[horizon, per_env, num_envs, ...]` runs of consecutive steps of one episode (for the
            TD-MPC model rollout); a window never crosses an episode end or the write cursor

Since every column is filled at the same rate, sampling `per_env` rows per column is uniform over
all stored transitions, and the draw is the same on 1 device or many (the random numbers are drawn
over the global `[per_env, num_envs]` shape).

`episode_step` (i32 per stored step) counts the steps before it in the same episode; a window of
length H starting at row r is valid iff the step at row r + H − 1 has `episode_step ≥ H − 1` and
lies behind the cursor.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh

from vlajax.core import mesh as mesh_lib


@struct.dataclass
class Replay:
  data: Any                 # pytree, leaves [rows, num_envs, ...]
  episode_step: jax.Array   # i32[rows, num_envs]: index of each stored step within its episode
  next_episode_step: jax.Array  # i32[num_envs]: `episode_step` the next inserted step gets
  cursor: jax.Array         # i32[]: the row the next insert writes
  size: jax.Array           # i32[]: rows holding data (≤ rows)

  @property
  def rows(self) -> int:
    return self.episode_step.shape[0]

  @property
  def num_envs(self) -> int:
    return self.episode_step.shape[1]

  @property
  def num_transitions(self) -> jax.Array:
    return self.size * self.num_envs


def init(example: Any, capacity: int, num_envs: int) -> Replay:
  """An empty buffer for transitions shaped like `example` (one env's leaves, no batch axis).

  `capacity` counts transitions over all envs and must be a multiple of `num_envs`.
  """
  if capacity % num_envs or capacity < num_envs:
    raise ValueError(f"replay capacity ({capacity}) must be a positive multiple of num_envs "
                     f"({num_envs})")
  rows = capacity // num_envs
  data = jax.tree.map(lambda x: jnp.zeros((rows, num_envs) + jnp.shape(x), jnp.asarray(x).dtype),
                      example)
  return Replay(data=data, episode_step=jnp.zeros((rows, num_envs), jnp.int32),
                next_episode_step=jnp.zeros((num_envs,), jnp.int32),
                cursor=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def sharding(replay_or_abstract: Replay, mesh: Mesh) -> Replay:
  """Shardings for a `Replay`: env columns over mesh axis `data`, counters replicated."""
  columns = mesh_lib.sharding(mesh, None, "data")
  return Replay(data=jax.tree.map(lambda _: columns, replay_or_abstract.data),
                episode_step=columns, next_episode_step=mesh_lib.sharding(mesh, "data"),
                cursor=mesh_lib.replicated(mesh), size=mesh_lib.replicated(mesh))


def insert(replay: Replay, row: Any, done: jax.Array) -> Replay:
  """Writes one batched step `row` (leaves `[num_envs, ...]`); `done: f32[num_envs]` ends episodes."""
  def write(buffer, value):
    value = jnp.asarray(value, buffer.dtype)[None]
    start = (replay.cursor,) + (0,) * (buffer.ndim - 1)
    return jax.lax.dynamic_update_slice(buffer, value, start)

  data = jax.tree.map(write, replay.data, row)
  episode_step = write(replay.episode_step, replay.next_episode_step)
  next_episode_step = jnp.where(done > 0, 0, replay.next_episode_step + 1).astype(jnp.int32)
  rows = replay.rows
  return Replay(data=data, episode_step=episode_step, next_episode_step=next_episode_step,
                cursor=(replay.cursor + 1) % rows, size=jnp.minimum(replay.size + 1, rows))


def _oldest(replay: Replay) -> jax.Array:
  """Row of the oldest stored step (0 until the buffer has wrapped)."""
  return jnp.where(replay.size < replay.rows, 0, replay.cursor)


def _gather_columns(leaf: jax.Array, rows: jax.Array) -> jax.Array:
  """leaf[rows[..., j], j] for every column j: `[R, N, ...]`, `[..., N]` -> `[..., N, ...]`.

  One `take_along_axis` gather with the env axis as a batch dimension: it reads only the picked
  rows (no transpose or copy of the buffer) and stays local to each device's columns.
  """
  lead = rows.shape[:-1]
  flat = rows.reshape((-1, rows.shape[-1]))                       # [M, N]
  idx = flat.reshape(flat.shape + (1,) * (leaf.ndim - 2))
  picked = jnp.take_along_axis(leaf, idx, axis=0, mode="clip")   # [M, N, ...]
  return picked.reshape(lead + leaf.shape[1:])


def sample(replay: Replay, rng: jax.Array, per_env: int) -> Any:
  """`per_env` uniformly drawn stored steps per env column: leaves `[per_env, num_envs, ...]`.

  Sampling an empty buffer returns zeros; callers gate learning on `num_transitions`.
  """
  offsets = jax.random.randint(rng, (per_env, replay.num_envs), 0, jnp.maximum(replay.size, 1))
  rows = (_oldest(replay) + offsets) % replay.rows
  return jax.tree.map(lambda leaf: _gather_columns(leaf, rows), replay.data)


def window_valid(replay: Replay, start_offsets: jax.Array, horizon: int) -> jax.Array:
  """Whether the `horizon` steps starting `start_offsets` rows after the oldest are one episode.

  `start_offsets: i32[..., num_envs]` (ages relative to the oldest stored row) -> bool, same shape.
  """
  last_offset = start_offsets + horizon - 1
  last_rows = (_oldest(replay) + last_offset) % replay.rows
  last_step = _gather_columns(replay.episode_step, last_rows)
  return (last_offset < replay.size) & (last_step >= horizon - 1)


def sample_windows(replay: Replay, rng: jax.Array, per_env: int, horizon: int,
                   candidates: int = 8) -> tuple[Any, jax.Array]:
  """`per_env` windows of `horizon` consecutive steps of one episode for every env column.

  Returns `(data, valid)`: leaves `[horizon, per_env, num_envs, ...]` and `valid: bool[per_env,
  num_envs]`. Each window is the first valid one among `candidates` uniformly drawn starts (so
  windows are uniform over valid starts); `valid` is False only when all candidates crossed an
  episode end (possible only while episodes are shorter than a few horizons, or before `horizon`
  steps are stored). Invalid windows must be masked out of the loss.
  """
  num_starts = jnp.maximum(replay.size - horizon + 1, 1)
  offsets = jax.random.randint(rng, (candidates, per_env, replay.num_envs), 0, num_starts)
  ok = window_valid(replay, offsets, horizon)
  first = jnp.argmax(ok, axis=0)                                    # [per_env, N]
  start = jnp.take_along_axis(offsets, first[None], axis=0)[0]
  valid = jnp.any(ok, axis=0)
  steps = jnp.arange(horizon)[:, None, None]
  rows = (_oldest(replay) + start[None] + steps) % replay.rows      # [H, per_env, N]
  return jax.tree.map(lambda leaf: _gather_columns(leaf, rows), replay.data), valid
