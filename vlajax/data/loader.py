"""`DataLoader`: the mixture as JAX batches sharded over the mesh, with a resumable position.

  loader = DataLoader(config.data, mesh=mesh, stats_dir=run_dir)
  batch = next(loader)                  # the format documented in `vlajax.data`
  saved = loader.state()                # dict of ints -> store in the training checkpoint
  ...
  loader = DataLoader(config.data, mesh=mesh, stats_dir=run_dir, state=saved)  # continues exactly

Multi-host: each process reads its own windows (`process_index` / `process_count`, default JAX's),
builds `global_batch_size / process_count` rows and the global arrays are assembled with
`jax.make_array_from_process_local_data`. `state()` is per process.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vlajax.data import mixture, normalization, oxe_registry, rlds

STATE_VERSION = 1
_HOST_LOCAL = ("instruction", "answer", "dataset_name")


class DataLoader:
  """Iterator over standardized, mixed, sharded training batches (see `vlajax.data`)."""

  def __init__(self, cfg, mesh=None, *, train: bool = True, split: str | None = None,
               stats_dir: str | None = None, state: Mapping[str, Any] | None = None,
               process_index: int | None = None, process_count: int | None = None,
               batch_axes: tuple[str, ...] = ("data",), dataset_dirs: Mapping[str, str] | None = None,
               stats: Mapping[str, dict] | None = None):
    self.cfg = cfg
    self.train = train
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    if cfg.global_batch_size % self.process_count:
      raise ValueError(f"global_batch_size {cfg.global_batch_size} is not divisible by "
                       f"process_count {self.process_count}")
    self.local_batch = cfg.global_batch_size // self.process_count
    self.mesh = mesh
    self.batch_axes = batch_axes
    split = split or (cfg.train_split if train else cfg.val_split)
    stats_dir = stats_dir or cfg.stats_dir or None

    weights = {k: float(v) for k, v in cfg.weights.items() if float(v) > 0}
    if not weights and not (cfg.vl_data_dir and cfg.vl_ratio > 0):
      raise ValueError("data config selects no dataset: every entry of 'weights' is 0")
    names = sorted(weights)
    for n in names:
      oxe_registry.spec(n)                      # unknown dataset -> KeyError naming it
    oxe_registry.check_dims(names, cfg.action_dim, cfg.proprio_dim)
    dataset_dirs = dict(dataset_dirs or {})

    self.dataset_names: list[str] = []
    self.stats: dict[str, dict] = {}
    self.streams: list[mixture.Stream] = []
    sources = {}
    for n in names:
      directory = dataset_dirs.get(n) or rlds.resolve_dataset_dir(cfg.data_root, n)
      sources[n] = rlds.RldsSource(directory, split)
      identity = {"name": n, "directory": sources[n].directory, "split": split,
                  "episodes": sources[n].num_episodes, "registry": oxe_registry.REGISTRY_VERSION}
      # Given `stats` (a held-out split normalized like the training split) win over computing.
      self.stats[n] = dict(stats[n]) if stats and n in stats else normalization.load_or_compute(
          stats_dir, n, identity, lambda n=n: mixture.compute_stats(n, sources[n]))
    vl = bool(cfg.vl_data_dir) and cfg.vl_ratio > 0
    robot_share = 1.0 - (cfg.vl_ratio if vl else 0.0)
    for n in names:
      weight = weights[n] * (self.stats[n]["num_transitions"] if cfg.balance_weights else 1.0)
      self._add_stream(n, sources[n], weight, lambda i, n=n: mixture.robot_frames_fn(
          n, i, sources[n], self.stats[n], cfg))
    robot_total = sum(s.weight for s in self.streams)
    for s in self.streams:
      s.weight = s.weight / robot_total * robot_share
    if vl:
      # A flat tfds dataset: one record = one (image, prompt, answer) example.
      source = rlds.RldsSource(rlds.resolve_dataset_dir(cfg.vl_data_dir), cfg.vl_split,
                               require_steps=False)
      self._add_stream("vision_language", source, cfg.vl_ratio,
                       lambda i: mixture.vl_frames_fn(i, source, cfg))

    self._state = self._initial_state() if state is None else self._checked(state)
    self._ds = mixture.mixed_dataset(self.streams, cfg, self.process_index, self._state, train,
                                     self.local_batch)
    self._it = self._ds.as_numpy_iterator()
    self._names_array = np.asarray([n.encode() for n in self.dataset_names], dtype=object)

  def _add_stream(self, name, source, weight, make_fn):
    index = len(self.streams)
    windows = source.windows(self.cfg.episodes_per_window, self.process_index, self.process_count)
    self.streams.append(mixture.Stream(name=name, dataset_id=index, source=source,
                                       windows=windows, to_frames=make_fn(index), weight=weight))
    self.dataset_names.append(name)

  # ---- position -------------------------------------------------------------------------------
  def _initial_state(self) -> dict:
    return {"version": STATE_VERSION, "seed": int(self.cfg.seed),
            "process_index": self.process_index, "example_index": 0,
            "streams": {s.name: {"block": 0, "frame": 0} for s in self.streams}}

  def _checked(self, state: Mapping[str, Any]) -> dict:
    state = copy.deepcopy(dict(state))
    for key in ("version", "seed", "example_index", "streams"):
      if key not in state:
        raise KeyError(f"data iterator state lacks '{key}' (has: {sorted(state)})")
    if state["seed"] != self.cfg.seed:
      raise ValueError(f"data iterator state has seed {state['seed']}, config seed is "
                       f"{self.cfg.seed}")
    missing = set(self.dataset_names) - set(state["streams"])
    if missing:
      raise KeyError(f"data iterator state lacks streams {sorted(missing)} "
                     f"(has: {sorted(state['streams'])})")
    return state

  def state(self) -> dict:
    """The position after the last delivered batch: a JSON/msgpack-serializable dict of ints."""
    return copy.deepcopy(self._state)

  # ---- iteration ------------------------------------------------------------------------------
  def next_local(self) -> dict:
    """This process's rows of the next batch as numpy (strings as object arrays)."""
    raw = next(self._it)
    self._advance(raw)
    return self._format(raw)

  def _advance(self, raw) -> None:
    ids, blocks, frames = raw["dataset_id"], raw["_block"], raw["_frame"]
    for row in range(len(ids)):
      name = self.dataset_names[int(ids[row])]
      self._state["streams"][name] = {"block": int(blocks[row]), "frame": int(frames[row]) + 1}
    self._state["example_index"] = int(raw["_index"][-1]) + 1

  def _format(self, raw) -> dict:
    goal = {"image_goal": raw["image_goal"]} if "image_goal" in raw else {}
    return {
        "observation": {
            **goal,
            "image_primary": raw["image_primary"], "image_wrist": raw["image_wrist"],
            "image_mask": {k: v for k, v in raw["image_mask"].items()},
            "proprio": raw["proprio"], "proprio_mask": raw["proprio_mask"],
            "timestep_pad_mask": raw["timestep_pad_mask"],
        },
        "action": raw["action"], "action_pad_mask": raw["action_pad_mask"],
        "dataset_id": raw["dataset_id"], "is_robot": raw["is_robot"],
        "instruction": np.asarray(list(raw["instruction"]), dtype=object),
        "answer": np.asarray(list(raw["answer"]), dtype=object),
        "dataset_name": self._names_array[raw["dataset_id"]],
    }

  def _sharding(self) -> NamedSharding:
    if self.mesh is None:
      from vlajax.core import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
      self.mesh = mesh_lib.make_mesh({"data": -1})
    return NamedSharding(self.mesh, PartitionSpec(self.batch_axes))

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    local = self.next_local()
    sharding = self._sharding()

    def to_global(path, x):
      if any(getattr(p, "key", None) in _HOST_LOCAL for p in path):
        return x
      return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree_util.tree_map_with_path(to_global, local)

  def unnormalize_action(self, action, dataset_name: str):
    """Normalized, padded actions [..., A] of `dataset_name` -> its native units [..., a]."""
    spec = oxe_registry.spec(dataset_name)
    native = action[..., :spec.action_dim]
    return normalization.unnormalize(native, self.stats[dataset_name]["action"],
                                     self.cfg.normalization, spec.normalize_action)
