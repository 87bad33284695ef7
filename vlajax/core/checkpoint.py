"""Orbax checkpoints of whole training states: atomic, keep-N, restorable onto a sharding.

A checkpoint step holds two items: `state` (any pytree of arrays) and `metadata` (JSON: counters,
config, iterator positions). Orbax writes to a temporary directory and renames it when complete,
so an interrupted save never replaces the last good checkpoint.
"""
from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _key_name(entry) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _nest(tree: Any) -> dict:
  """Any pytree as nested dicts of its non-empty leaves, keyed by path (orbax refuses size-0 arrays)."""
  nested: dict = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if np.size(leaf) == 0 and hasattr(leaf, "shape"):
      continue
    node = nested
    names = [_key_name(entry) for entry in path] or ["value"]
    for name in names[:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = leaf
  return nested


def _zeros_like(ref) -> Any:
  """A size-0 leaf like `ref`, on `ref`'s sharding when it has one: a restored state then has the
  signature of the state it was restored onto, so jitted functions do not recompile for it."""
  zeros = np.zeros(ref.shape, ref.dtype)
  sharding = getattr(ref, "sharding", None)
  if sharding is None:
    return zeros
  return jax.make_array_from_callback(ref.shape, sharding, lambda index: zeros[index])


def _unnest(nested: dict, target: Any) -> Any:
  """Inverse of `_nest` with `target`'s structure; size-0 leaves come back as zeros."""
  paths, treedef = jax.tree_util.tree_flatten_with_path(target)
  leaves = []
  for path, ref in paths:
    if np.size(ref) == 0 and hasattr(ref, "shape"):
      leaves.append(_zeros_like(ref))
      continue
    node = nested
    for name in [_key_name(entry) for entry in path] or ["value"]:
      node = node[name]
    leaves.append(node)
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _abstract(tree: Any) -> Any:
  """Shape/dtype/sharding placeholders for `tree`, so restore lands on the same layout."""
  def leaf(x):
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    if isinstance(x, (np.ndarray, np.generic)):
      return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
    return x
  return jax.tree.map(leaf, tree)


class Checkpointer:
  """Saves and restores training states under `directory/<step>/`.

  Every process must call `save` and `restore` (orbax coordinates multi-host writes; process 0
  writes the metadata).
  """

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int | None = 3):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "metadata"),
    )

  def save(self, step: int, state: Any, metadata: dict | None = None, wait: bool = True) -> None:
    """Writes `state` (pytree of arrays) and `metadata` (JSON-serializable dict) at `step`."""
    self._manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.PyTreeSave(_nest(state)),
                                metadata=ocp.args.JsonSave(dict(metadata or {}))),
        force=True,
    )
    if wait:
      self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, target: Any, step: int | None = None, partial: bool = False) -> Any:
    """Restores the state at `step` (default: latest) with `target`'s structure, dtypes and shardings.

    With `partial=True`, `target` may name a subset of the saved tree (e.g. only the policy
    parameters of a training state); only that subset is read.
    """
    step = self._resolve(step)
    abstract = _nest(_abstract(target))
    args = ocp.args.PyTreeRestore(item=abstract,
                                  restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                                  partial_restore=partial)
    restored = self._manager.restore(step, args=ocp.args.Composite(state=args))
    return _unnest(restored["state"], target)

  def metadata(self, step: int | None = None) -> dict:
    step = self._resolve(step)
    restored = self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    return dict(restored["metadata"])

  def _resolve(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint found in {self.directory}")
    if step not in self._manager.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} "
                              f"(have {sorted(self._manager.all_steps())})")
    return step

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
