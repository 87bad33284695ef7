"""FSDP + data-parallel placement of training states and batches on a (data, fsdp) mesh.

Parameters, EMA and optimizer moments are sharded over the ``fsdp`` axis along their largest dimension
divisible by the axis size (small leaves stay replicated); batches are split along dim 0 over every
batch axis present (``data`` and ``fsdp``). ``jax.jit`` then inserts the all-gathers and
reduce-scatters of ZeRO-3 style training.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int, axis: str = "fsdp", min_size: int = 1024) -> P:
  """PartitionSpec sharding the largest ``fsdp_size``-divisible dim of ``shape`` over ``axis``."""
  if fsdp_size <= 1 or not shape or int(np.prod(shape)) < min_size:
    return P()
  candidates = [i for i, d in enumerate(shape) if d % fsdp_size == 0]
  if not candidates:
    return P()
  best = max(candidates, key=lambda i: (shape[i], -i))
  spec = [None] * len(shape)
  spec[best] = axis
  return P(*spec)


def state_shardings(abstract_state: Any, mesh: Mesh, axis: str = "fsdp", min_size: int = 1024) -> Any:
  """NamedSharding for every leaf of an (abstract) state, following ``fsdp_spec``."""
  size = mesh.shape.get(axis, 1)
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(tuple(x.shape), size, axis, min_size)),
                      abstract_state)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Dim 0 split over the mesh's batch axes."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def num_batch_shards(mesh: Mesh) -> int:
  return int(np.prod([mesh.shape[a] for a in batch_axes(mesh)]))


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Host-local numpy batch (this process's rows) -> global jax arrays split over the batch axes."""
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, local_batch)
