"""`DataLoader`: the mixture as JAX batches sharded over the mesh, with a resumable position.

  loader = DataLoader(config.data, mesh=mesh, stats_dir=run_dir)
  batch = next(loader)                  # the format documented in `vlajax.data`
  saved = loader.state()                # dict of ints -> store in the training checkpoint
  ...
  loader = DataLoader(config.data, mesh=mesh, stats_dir=run_dir, state=saved)  # continues exactly

Multi-host: each process reads its own windows (`process_index` / `process_count`, default JAX's),
builds `global_batch_size / process_count` rows and the global arrays are assembled with
`jax.make_array_from_process_local_data`. `state()` is per process.

A record that does not read or decode (`data.on_corrupt`, `vlajax.data.corruption`) raises
`CorruptDataError` naming dataset, split, shard, record and feature, or ("skip") is left out,
logged and counted: `corruption_report()`, and `metrics()` for the training loop's log. An image
fails to decode only after mixing; the loader then replays the mixture from its position (the
failed batch was not delivered) to find the frame, and "skip" rebuilds the pipeline without that
record (its frames are filtered by position, so `state()` keeps meaning the same frames).
"""
from __future__ import annotations

import atexit
import copy
import gc
import weakref
from typing import Any, Mapping

import jax
import numpy as np
import tensorflow as tf
from jax.sharding import NamedSharding, PartitionSpec

from vlajax.data import corruption, lerobot, mixture, normalization, oxe_registry, rlds

STATE_VERSION = 1
_HOST_LOCAL = ("instruction", "answer", "dataset_name")
_OPEN = weakref.WeakSet()      # loaders whose pipelines `_close_open_loaders` stops at exit


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
    self.on_corrupt = corruption.check_mode(cfg.get("on_corrupt", "raise"))
    self.guards: dict[str, corruption.RecordGuard] = {}   # dataset name -> its records' guard

    weights = {k: float(v) for k, v in cfg.weights.items() if float(v) > 0}
    if not weights and not (cfg.vl_data_dir and cfg.vl_ratio > 0):
      raise ValueError("data config selects no dataset: every entry of 'weights' is 0")
    names = sorted(weights)
    dataset_dirs = dict(dataset_dirs or {})
    self.lerobot_dirs = lerobot.dataset_dirs(cfg, names, dataset_dirs)   # read as LeRobot v3
    rlds_names = [n for n in names if n not in self.lerobot_dirs]
    for n in rlds_names:
      oxe_registry.spec(n)                      # unknown dataset -> KeyError naming it
    oxe_registry.check_dims(rlds_names, cfg.action_dim, cfg.proprio_dim)

    self.dataset_names: list[str] = []
    self.stats: dict[str, dict] = {}
    self.streams: list[mixture.Stream] = []
    sources = {}
    for n in names:
      if n in self.lerobot_dirs:
        sources[n] = lerobot.from_config(n, self.lerobot_dirs[n], split, cfg)
        identity = sources[n].identity(cfg.lerobot_stats)
        compute = lambda n=n: sources[n].stats(cfg.lerobot_stats)
      else:
        directory = dataset_dirs.get(n) or rlds.resolve_dataset_dir(cfg.data_root, n)
        sources[n] = rlds.RldsSource(directory, split)
        identity = {"name": n, "directory": sources[n].directory, "split": split,
                    "episodes": sources[n].num_episodes, "registry": oxe_registry.REGISTRY_VERSION}
        compute = lambda n=n: mixture.compute_stats(n, sources[n], cfg.episodes_per_window,
                                                    self._guard(n, sources[n]))
      # Given `stats` (a held-out split normalized like the training split) win over computing.
      self.stats[n] = dict(stats[n]) if stats and n in stats else normalization.load_or_compute(
          stats_dir, n, identity, compute)
    vl = bool(cfg.vl_data_dir) and cfg.vl_ratio > 0
    robot_share = 1.0 - (cfg.vl_ratio if vl else 0.0)
    for n in names:
      weight = weights[n] * (self.stats[n]["num_transitions"] if cfg.balance_weights else 1.0)
      if n in self.lerobot_dirs:
        make_fn = lambda i, n=n: sources[n].frames_fn(i, self.stats[n], cfg)
      else:
        make_fn = lambda i, n=n: mixture.robot_frames_fn(n, i, sources[n], self.stats[n], cfg)
      self._add_stream(n, sources[n], weight, make_fn)
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
    self._build()
    _OPEN.add(self)
    self._names_array = np.asarray([n.encode() for n in self.dataset_names], dtype=object)

  def _add_stream(self, name, source, weight, make_fn):
    index = len(self.streams)
    windows = source.windows(self.cfg.episodes_per_window, self.process_index, self.process_count)
    self.streams.append(mixture.Stream(name=name, dataset_id=index, source=source,
                                       windows=windows, to_frames=make_fn(index), weight=weight,
                                       guard=self._guard(name, source)))
    self.streams[-1].guard.set_reads(windows)
    self.dataset_names.append(name)

  def _guard(self, name, source) -> corruption.RecordGuard:
    if name not in self.guards:
      self.guards[name] = corruption.RecordGuard(source, self.on_corrupt)
    return self.guards[name]

  def close(self) -> None:
    """Stops the pipeline (its threads and buffers); the loader cannot iterate afterwards."""
    self._it = self._ds = None

  def _build(self) -> None:
    """(Re)builds the pipeline from the current position (`state()`)."""
    self._ds = mixture.mixed_dataset(self.streams, self.cfg, self.process_index, self._state,
                                     self.train, self.local_batch)
    self._it = self._ds.as_numpy_iterator()

  # ---- corrupt records --------------------------------------------------------------------------
  def corruption_report(self) -> dict:
    """Records skipped so far (on_corrupt "skip"; always 0 with "raise", which raises instead).

    {"skipped_records": int, "corrupt_shards": int, "datasets": {name: {"skipped_records",
    "corrupt_shards", "shards": {shard path: [record indices]}}}}: distinct records of this
    process's reads (statistics pass included), each counted once however often it is met.
    """
    reports = {name: guard.report() for name, guard in self.guards.items()}
    return {**corruption.total(reports), "datasets": reports}

  def metrics(self) -> dict[str, float]:
    """Scalars for the training log: skipped record / shard counts under "skip", else none."""
    if self.on_corrupt != "skip":
      return {}
    totals = corruption.total({n: g.report() for n, g in self.guards.items()})
    return {f"data/{k}": float(v) for k, v in totals.items()}

  def _next_raw(self) -> dict:
    seen = set()
    while True:
      try:
        return next(self._it)
      except tf.errors.OpError as error:
        origin = self._on_error(error)      # raises, or ("skip") excludes a record and rebuilds
        if origin in seen:
          raise
        seen.add(origin)

  def _on_error(self, error: tf.errors.OpError) -> tuple:
    """Turns a pipeline error into `CorruptDataError` ("raise") or a skipped record ("skip")."""
    corruption.raise_from(error, [(s.guard, s.to_frames) for s in self.streams])
    found = self._find_undecodable_frame(error)
    if found is None:
      raise error
    stream, (file_index, record), cause = found
    if self.on_corrupt == "raise":
      text = str(cause) if isinstance(cause, corruption.FeatureDecodeError) else (
          f"cannot be decoded: {corruption.short_message(cause)}")
      raise corruption.CorruptDataError(
          f"{stream.guard.where(file_index)}: record {record}: {text} (or set "
          "data.on_corrupt='skip')", stream.name, stream.guard.source.split,
          stream.guard.source.files[file_index], record,
          getattr(cause, "feature", None)) from error
    if stream.guard.lost((file_index, record, 1), [record], corruption.short_message(cause)):
      raise corruption.CorruptDataError(stream.guard.exhausted, stream.name,
                                        stream.guard.source.split) from error
    stream.excluded.add((file_index, record))
    self._build()
    return stream.name, file_index, record

  def _find_undecodable_frame(self, error):
    """(stream, (shard, record), exception) of the first frame from the position whose frame
    transform fails when replayed eagerly, or None. The failed batch was not delivered, so the
    frame is among its `local_batch` examples (a few batches are searched)."""
    transform = mixture.frame_transform(self.cfg, self.process_index, self.train)
    frames = mixture.mixed_frames(self.streams, self.cfg, self.process_index, self._state)
    try:
      for i, frame in frames.take(self.local_batch * 3):
        try:
          transform(i, frame)
        except (corruption.FeatureDecodeError, tf.errors.OpError) as e:
          stream = self.streams[int(frame["dataset_id"])]
          origin = tuple(int(x) for x in frame["_origin"].numpy())
          if isinstance(e, corruption.FeatureDecodeError):
            e = corruption.FeatureDecodeError(_image_feature(stream.name, e.feature),
                                              e.__cause__ or e)
          return stream, origin, e
    except tf.errors.OpError as replay_error:
      corruption.raise_from(replay_error, [(s.guard, s.to_frames) for s in self.streams])
      raise error from replay_error
    return None

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
    raw = self._next_raw()
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

  def normalization_spec(self, dataset_name: str) -> dict:
    """Native dims and normalized-dim masks of a robot dataset (OXE registry or LeRobot):
    {"action_dim", "action_normalize_mask", "proprio_dim", "proprio_normalize_mask"}."""
    if dataset_name in self.lerobot_dirs:
      source = self.streams[self.dataset_names.index(dataset_name)].source
      return {"action_dim": source.action_dim, "action_normalize_mask": list(source.normalize_action),
              "proprio_dim": source.proprio_dim,
              "proprio_normalize_mask": list(source.normalize_proprio)}
    spec = oxe_registry.spec(dataset_name)
    return {"action_dim": spec.action_dim, "action_normalize_mask": list(spec.normalize_action),
            "proprio_dim": spec.proprio_dim(),
            "proprio_normalize_mask": list(oxe_registry.proprio_normalize_mask(dataset_name))}

  def unnormalize_action(self, action, dataset_name: str):
    """Normalized, padded actions [..., A] of `dataset_name` -> its native units [..., a]."""
    spec = self.normalization_spec(dataset_name)
    native = action[..., :spec["action_dim"]]
    return normalization.unnormalize(native, self.stats[dataset_name]["action"],
                                     self.cfg.normalization, spec["action_normalize_mask"])


def _image_feature(dataset: str, camera: str) -> str:
  """The on-disk feature behind a standardized camera ("image_primary" -> "steps/observation/x")."""
  if dataset == "vision_language":
    return "image"
  if dataset not in oxe_registry.names():
    return camera
  spec = oxe_registry.spec(dataset)
  key = spec.wrist_image if camera == "image_wrist" else spec.primary_image
  return f"steps/observation/{key} ({camera})" if key else camera


@atexit.register
def _close_open_loaders() -> None:
  """Stops live pipelines while Python still runs: a LeRobot stream decodes video in a
  `tf.numpy_function`, which cannot take the GIL once shutdown has begun, and deleting an iterator
  waits for its calls in flight, so a loader left to interpreter shutdown could hang the exit."""
  for loader in list(_OPEN):
    loader.close()
  gc.collect()                 # iterators held in reference cycles go now, not at shutdown
