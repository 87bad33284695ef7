"""Device meshes, multi-host initialisation, per-process randomness and FSDP x data placement.

Everything shards with `jax.jit` + `NamedSharding` over a `Mesh`; `pmap` is not used. Training
states are placed FSDP-style (`fsdp_shardings`: every leaf split over the mesh's `fsdp` axis along
its largest divisible dimension, small leaves replicated) and batches split along dim 0 over the
batch axes present (`data`, `fsdp`); `jax.jit` then inserts the all-gathers and reduce-scatters of
ZeRO-3 style training. A mesh without an `fsdp` axis replicates the state: plain data parallelism.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def make_mesh(axes: Mapping[str, int] | None = None, devices=None) -> Mesh:
  """A mesh over `devices` (default: all, across hosts) with named axes.

  `axes` maps axis name -> size, with at most one -1 meaning "the remaining devices", e.g.
  `{"data": -1}` or `{"data": 2, "fsdp": 2}`. Sizes must multiply to the device count.
  """
  axes = dict(axes or {"data": -1})
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  free = [name for name, size in axes.items() if size == -1]
  if len(free) > 1:
    raise ValueError(f"mesh axes {axes}: at most one axis may be -1")
  fixed = math.prod(size for size in axes.values() if size != -1)
  if free:
    if n % fixed:
      raise ValueError(f"mesh axes {axes}: {n} devices are not divisible by {fixed}")
    axes[free[0]] = n // fixed
  if math.prod(axes.values()) != n:
    raise ValueError(f"mesh axes {axes} need {math.prod(axes.values())} devices, have {n}")
  grid = np.asarray(devices, dtype=object).reshape(tuple(axes.values()))
  return Mesh(grid, tuple(axes.keys()))


def split_cpu(num_devices: int = 0, divides: tuple[int, ...] = ()) -> int:
  """Splits the host CPU into `num_devices` XLA devices, so that a data-parallel program (one
  shard per device) runs on every core; returns the count in effect.

  XLA runs one CPU device's program mostly on one thread: the `cpu` PPO preset on a 2-core
  machine uses ~1.4 cores as one device and 1.2x the env steps/s as two (BENCHMARKS.md).
  `num_devices=0` picks one device per core (`os.cpu_count()`), lowered to the largest count that
  divides every number in `divides` (e.g. the env batch). Must run before JAX creates its
  backends; does nothing (and returns the current count) when they exist already or when the count
  was set another way (`XLA_FLAGS=--xla_force_host_platform_device_count`, `jax_num_cpu_devices`).
  Accelerator backends are unaffected: their devices stay the default ones.
  """
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
  preset = ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
            or jax.config.jax_num_cpu_devices > 0)
  if preset or xla_bridge.backends_are_initialized():
    return len(jax.devices("cpu"))
  if num_devices < 0:
    raise ValueError(f"cpu_devices must be >= 0 (0 = one per core), got {num_devices}")
  count = num_devices or (os.cpu_count() or 1)
  if not num_devices:
    while count > 1 and any(n % count for n in divides):
      count -= 1
  jax.config.update("jax_num_cpu_devices", count)
  return count


def sharding(mesh: Mesh, *spec) -> NamedSharding:
  """`NamedSharding(mesh, PartitionSpec(*spec))`."""
  return NamedSharding(mesh, PartitionSpec(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, local_device_ids=None) -> None:
  """Starts multi-host JAX (a no-op when `num_processes` is None or 1 and nothing is auto-detected).

  On CPU the collectives go through gloo, so several local processes stand in for several hosts.
  """
  if num_processes in (None, 1) and coordinator_address is None:
    return
  # Only affects the CPU client; must be set before any backend is created.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, local_device_ids=local_device_ids)


def process_key(key: jax.Array) -> jax.Array:
  """Folds the process index into `key` so every host draws different randomness."""
  return jax.random.fold_in(key, jax.process_index())


def is_main_process() -> bool:
  """True on the process that writes logs and checkpoints."""
  return jax.process_index() == 0


def barrier(name: str, timeout_s: float = 600.0) -> None:
  """Waits until every process reaches `name` (coordination service; no device collective).

  Useful before the first collective of a program: CPU (gloo) collectives give up after ~30 s,
  and processes that compile at different speeds can be further apart than that.
  """
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  client = distributed.global_state.client
  if client is None or jax.process_count() == 1:
    return
  client.wait_at_barrier(name, int(timeout_s * 1000))


BATCH_AXES = ("data", "fsdp")


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int, axis: str = "fsdp",
              min_size: int = 1024) -> PartitionSpec:
  """The spec sharding the largest `fsdp_size`-divisible dim of `shape` over `axis` (the first of
  equal ones); replicated when `fsdp_size` is 1, no dim divides or the leaf has < `min_size`
  entries."""
  if fsdp_size <= 1 or not shape or int(np.prod(shape)) < min_size:
    return PartitionSpec()
  candidates = [i for i, d in enumerate(shape) if d % fsdp_size == 0]
  if not candidates:
    return PartitionSpec()
  best = max(candidates, key=lambda i: (shape[i], -i))
  spec = [None] * len(shape)
  spec[best] = axis
  return PartitionSpec(*spec)


def fsdp_shardings(abstract_tree: Any, mesh: Mesh, axis: str = "fsdp",
                   min_size: int = 1024) -> Any:
  """A `NamedSharding` for every leaf of an (abstract) pytree, by `fsdp_spec` over the mesh's
  `axis` (absent: every leaf replicated)."""
  size = mesh.shape.get(axis, 1)
  return jax.tree.map(
      lambda x: NamedSharding(mesh, fsdp_spec(tuple(x.shape), size, axis, min_size)),
      abstract_tree)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  """The axes of `BATCH_AXES` the mesh has: a batch's dim 0 is split over all of them."""
  return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Dim 0 split over the mesh's batch axes."""
  return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def num_batch_shards(mesh: Mesh) -> int:
  """How many ways a batch's dim 0 is split (a global batch size must be a multiple)."""
  return int(np.prod([mesh.shape[a] for a in batch_axes(mesh)]))


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
  """This process's rows (a pytree of host arrays, dim 0 = local batch) -> global jax arrays split
  over the batch axes (dim 0 = local batch x process count)."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def compiled_together(fn: Callable, name: str, *args) -> Callable:
  """`fn` (jitted) compiled ahead of time for `args`, then every process waits at barrier `name`.

  With several processes the first collective of a program must start on every host within
  gloo's ~30 s, so hosts that compile at different speeds are lined up first. One process: `fn`
  itself (its jit cache is shared by repeated runs).
  """
  if jax.process_count() == 1:
    return fn
  compiled = fn.lower(*args).compile()
  barrier(f"compiled_{name}")
  return compiled
