"""LeRobot v3 datasets (parquet + mp4) as a `vlajax.data` source beside `rlds.RldsSource`.

The on-disk layout read (LeRobot `codebase_version` "v3.0", huggingface/lerobot `datasets/utils.py`):

  meta/info.json          fps, features {name: {dtype, shape, names, info}}, splits {"train": "0:N"},
                          data_path / video_path templates, chunks_size, totals
  meta/stats.json         per feature: mean, std, min, max, count and (newer datasets) q01 ... q99
  meta/tasks.parquet      task string (pandas index: column `task` or `__index_level_0__`), task_index
  meta/episodes/chunk-XXX/file-XXX.parquet
                          one row per episode: episode_index, length, data/chunk_index, data/file_index,
                          videos/<key>/chunk_index, videos/<key>/file_index, videos/<key>/from_timestamp
  data/chunk-XXX/file-XXX.parquet
                          one row per frame, several episodes per file: observation.state, action,
                          timestamp, frame_index, episode_index, index, task_index
  videos/<key>/chunk-XXX/file-XXX.mp4
                          several episodes per file; frame t of an episode is the one shown at
                          from_timestamp + timestamp[t] (matched within a quarter of a frame period)

An episode becomes the trajectory `oxe_registry.standardize` makes of an RLDS episode:

  image_primary / image_wrist: string[T]  frames decoded with PyAV, kept as uncompressed BMP (the frame
                                          transforms decode it like PNG / JPEG; b"" = no such camera)
  proprio: float32[T, p]                  `observation.state`
  action:  float32[T, a]                  `action` (every dim normalized, as LeRobot does)
  instruction: string[T]                  the frame's task (`task_index` -> meta/tasks.parquet)

Cameras: `primary` is the first video (or parquet image) feature whose name lacks "wrist", `wrist` the
first that has it, unless given. With `image_size`, video frames are scaled to it (swscale, area) as
they are decoded, so a shuffle block holds h * w * 3 bytes per frame and camera (JPEG frames of an
RLDS block are ~10x smaller: lower `windows_per_block` / `max_block_frames` for large LeRobot
episodes). "image" features (PNG / JPEG inside the data parquet) pass through still encoded.

Everything after reading is the RLDS path's: a window is a run of up to `episodes_per_window`
consecutive episodes of one data file, host p of P takes windows p, p + P, ... (`windows`), a block's
windows are read (`read_windows`: episode positions, int64), turned into frames (`frames_fn`: parquet
+ mp4 in a `tf.numpy_function`, then the same normalization, history, chunking and padding as
`mixture.robot_frames_fn`) and shuffled; the mixture's position (block, frame) resumes it. An action
chunk is H consecutive frames, H / fps seconds; `fps` is recorded in the statistics. Splits are
the info.json ranges sliced like tfds splits ("train", "train[:95%]", "train[10:20]").

Errors name the dataset, the file and the feature (a missing feature or column, a shape that differs
from info.json, a missing mp4 or parquet file, a frame missing from the video).
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import struct
import threading
import types
from typing import Any, Mapping, Sequence

import numpy as np

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
TIMESTAMP_TOLERANCE_FRAMES = 0.25   # a video frame matches a timestamp within 1/4 frame period
STATS_MODES = ("dataset", "computed")
_DATA_CACHE_FILES = 4                # data files whose numeric columns stay in memory (per source)


def is_lerobot_dir(path: str) -> bool:
  """Whether `path` holds a LeRobot dataset (`meta/info.json`)."""
  return bool(path) and os.path.isfile(os.path.join(path, INFO_PATH))


def dataset_dirs(cfg, names: Sequence[str], given: Mapping[str, str] | None = None) -> dict[str, str]:
  """name -> directory of the `names` that are LeRobot datasets under the `data` config `cfg`.

  `cfg.lerobot_dirs.<name>` first; otherwise a directory passed for the name (`given`, the
  DataLoader's `dataset_dirs`) or `<cfg.data_root>/<name>` that holds meta/info.json.
  """
  configured = dict(cfg.get("lerobot_dirs") or {})
  given = dict(given or {})
  found = {}
  for name in names:
    if name in configured:
      found[name] = configured[name]
    elif is_lerobot_dir(given.get(name, "")):
      found[name] = given[name]
    elif cfg.get("data_root") and is_lerobot_dir(os.path.join(cfg.data_root, name)):
      found[name] = os.path.join(cfg.data_root, name)
  return found


def from_config(name: str, directory: str, split: str, cfg) -> LeRobotSource:
  """The source of dataset `name` for the `data` config `cfg` (cameras, image size, padded dims)."""
  cameras = dict(cfg.get("lerobot_cameras") or {}).get(name)
  source = LeRobotSource(directory, split, name=name, cameras=cameras, image_size=cfg.image_size)
  source.check_dims(cfg.action_dim, cfg.proprio_dim)
  return source


def bmp(bgr: np.ndarray) -> bytes:
  """An uncompressed 24-bit top-down BMP of uint8 [h, w, 3] BGR pixels (rows padded to 4 bytes)."""
  h, w, _ = bgr.shape
  row = (w * 3 + 3) & ~3
  pixels = np.ascontiguousarray(bgr).reshape(h, w * 3)
  if row != w * 3:
    pixels = np.pad(pixels, ((0, 0), (0, row - w * 3)))
  header = struct.pack("<2sIHHI", b"BM", 54 + row * h, 0, 0, 54) + struct.pack(
      "<IiiHHIIiiII", 40, w, -h, 1, 24, 0, row * h, 2835, 2835, 0, 0)
  return header + pixels.tobytes()


@dataclasses.dataclass(frozen=True)
class Episode:
  """Where one episode lives: its data file and, per camera feature, its mp4 and start time."""
  index: int                                   # episode_index
  length: int
  data_file: str                               # relative to the dataset directory
  videos: Mapping[str, tuple[str, float]]      # feature -> (mp4 relative path, from_timestamp)


class LeRobotSource:
  """A LeRobot v3 dataset split on disk: its episodes, windows and decoded trajectories."""

  def __init__(self, directory: str, split: str = "train", *, name: str | None = None,
               cameras: Sequence[str] | None = None, image_size: Sequence[int] | None = None,
               state_key: str = "observation.state", action_key: str = "action"):
    """Opens `directory` and checks its metadata, files and columns.

    Args:
      directory: the dataset root (holding meta/, data/, videos/).
      split: an info.json split, optionally sliced like tfds ("train[:95%]").
      name: the name errors and statistics use (default: the directory's basename).
      cameras: (primary feature, wrist feature), "" for none; default: chosen by name (module doc).
      image_size: (h, w) frames are scaled to while decoding; None keeps the video's size.
      state_key, action_key: the features read as proprio and action.
    """
    self.directory = os.fspath(directory)
    self.name = name or os.path.basename(os.path.normpath(self.directory))
    self.split = split
    if not is_lerobot_dir(self.directory):
      raise FileNotFoundError(f"{self._at(INFO_PATH)}: not found (not a LeRobot dataset directory)")
    with open(os.path.join(self.directory, INFO_PATH)) as f:
      self.info = json.load(f)
    version = self.info.get("codebase_version")
    if version != CODEBASE_VERSION:
      raise ValueError(f"{self._at(INFO_PATH)}: codebase_version {version!r}; this reader reads "
                       f"'{CODEBASE_VERSION}' (convert older datasets with LeRobot's v3.0 converter)")
    for key in ("fps", "features", "data_path", "splits"):
      if key not in self.info:
        raise KeyError(f"{self._at(INFO_PATH)}: lacks '{key}'")
    self.fps = float(self.info["fps"])
    self.features = self.info["features"]
    self.state_key, self.action_key = state_key, action_key
    self.action_dim = self._vector_dim(action_key)
    self.proprio_dim = self._vector_dim(state_key)
    self.action_mask = (True,) * self.action_dim
    self.normalize_action = (True,) * self.action_dim
    self.normalize_proprio = (True,) * self.proprio_dim
    self.cameras = self._cameras(cameras)
    self.image_size = tuple(int(s) for s in image_size) if image_size else None
    self._tasks = self._read_tasks()
    self.episodes = self._read_episodes(split)
    self.num_episodes = len(self.episodes)
    self.num_frames = sum(e.length for e in self.episodes)
    # Episodes are ordered by data file; file f holds positions offsets[f] .. offsets[f] + counts[f].
    self.files = sorted({e.data_file for e in self.episodes})
    file_of = {f: i for i, f in enumerate(self.files)}
    self.episodes = sorted(self.episodes, key=lambda e: (file_of[e.data_file], e.index))
    counts = collections.Counter(e.data_file for e in self.episodes)
    self._counts = [counts[f] for f in self.files]
    self._offsets = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64)
    self._check_files()
    self._cache: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()

  # ---- metadata -------------------------------------------------------------------------------
  def _at(self, file: str | None = None, feature: str | None = None) -> str:
    where = f"LeRobot dataset '{self.name}' ({self.directory})"
    if file:
      where += f", file '{file}'"
    if feature:
      where += f", feature '{feature}'"
    return where

  def _feature(self, key: str) -> dict:
    if key not in self.features:
      raise KeyError(f"{self._at(INFO_PATH, key)}: missing (features: {sorted(self.features)})")
    return self.features[key]

  def _vector_dim(self, key: str) -> int:
    feature = self._feature(key)
    shape = list(feature.get("shape", []))
    if feature.get("dtype") in ("video", "image", "string") or len(shape) != 1:
      raise ValueError(f"{self._at(INFO_PATH, key)}: expected a numeric vector, got dtype "
                       f"{feature.get('dtype')!r} shape {shape}")
    return int(shape[0])

  def _image_hw(self, key: str) -> tuple[int, int] | None:
    """(h, w) of a camera feature from its shape and names (LeRobot writes both orders)."""
    feature = self.features[key]
    shape, names = list(feature.get("shape", [])), list(feature.get("names") or [])
    if len(shape) != 3:
      return None
    if "height" in names and "width" in names:
      return int(shape[names.index("height")]), int(shape[names.index("width")])
    return (int(shape[1]), int(shape[2])) if shape[0] in (1, 3) else (int(shape[0]), int(shape[1]))

  def _cameras(self, cameras) -> dict[str, str | None]:
    keys = [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]
    if cameras is not None:
      chosen = list(cameras) + [""] * (2 - len(cameras))
      for key in chosen:
        if key and key not in keys:
          raise KeyError(f"{self._at(INFO_PATH, key)}: not a camera feature (cameras: {keys})")
      return {"primary": chosen[0] or None, "wrist": chosen[1] or None}
    wrist = [k for k in keys if "wrist" in k.lower()]
    other = [k for k in keys if "wrist" not in k.lower()]
    return {"primary": other[0] if other else None, "wrist": wrist[0] if wrist else None}

  def _read_tasks(self) -> list[bytes]:
    """Task strings indexed by task_index."""
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.directory, TASKS_PATH)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{self._at(TASKS_PATH)}: not found")
    table = pq.read_table(path)
    column = "task" if "task" in table.column_names else None
    if column is None:   # pandas wrote the task strings as its (unnamed) index
      meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
      index = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
      column = index[0] if index and index[0] in table.column_names else None
    if column is None or "task_index" not in table.column_names:
      raise KeyError(f"{self._at(TASKS_PATH)}: needs the task strings ('task' or the pandas index) and "
                     f"'task_index' (columns: {table.column_names})")
    indices = table.column("task_index").to_pylist()
    tasks = [b""] * (max(indices) + 1 if indices else 0)
    for i, text in zip(indices, table.column(column).to_pylist()):
      tasks[int(i)] = str(text).encode()
    return tasks

  def _read_episodes(self, split: str) -> list[Episode]:
    """The episodes of `split`: info.json's "start:stop" range sliced by a tfds split spec."""
    import pyarrow as pa  # pylint: disable=g-import-not-at-top
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    files = sorted(glob.glob(os.path.join(self.directory, EPISODES_DIR, "*", "*.parquet")))
    if not files:
      raise FileNotFoundError(f"{self._at(EPISODES_DIR + '/chunk-*/file-*.parquet')}: no episode "
                              "metadata files")
    cameras = [k for k in self.cameras.values() if k]
    videos = [k for k in cameras if self.features[k]["dtype"] == "video"]
    needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    for key in videos:
      needed += [f"videos/{key}/chunk_index", f"videos/{key}/file_index",
                 f"videos/{key}/from_timestamp"]
    tables = []
    for path in files:
      rel = os.path.relpath(path, self.directory)
      names = pq.read_schema(path).names
      for column in needed:
        if column not in names:
          raise KeyError(f"{self._at(rel, column.split('/')[1] if column.startswith('videos/') else None)}"
                         f": missing column '{column}'")
      tables.append(pq.read_table(path, columns=needed))
    rows = pa.concat_tables(tables).to_pydict()
    by_index = {}
    for i, index in enumerate(rows["episode_index"]):
      data_file = self.info["data_path"].format(chunk_index=rows["data/chunk_index"][i],
                                                file_index=rows["data/file_index"][i])
      video_files = {}
      for key in videos:
        if not self.info.get("video_path"):
          raise KeyError(f"{self._at(INFO_PATH, key)}: a video feature but no 'video_path'")
        video_files[key] = (self.info["video_path"].format(
            video_key=key, chunk_index=rows[f"videos/{key}/chunk_index"][i],
            file_index=rows[f"videos/{key}/file_index"][i]),
            float(rows[f"videos/{key}/from_timestamp"][i]))
      by_index[int(index)] = Episode(int(index), int(rows["length"][i]), data_file, video_files)
    return [by_index[i] for i in self._split_indices(split, sorted(by_index))]

  def _split_indices(self, split: str, available: list[int]) -> list[int]:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    splits = {}
    for key, value in self.info["splits"].items():
      start, _, stop = str(value).partition(":")
      splits[key] = list(range(int(start), int(stop)))
    try:
      instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(
          {k: types.SimpleNamespace(num_examples=len(v)) for k, v in splits.items()})
    except (ValueError, AssertionError) as e:
      raise KeyError(f"{self._at(INFO_PATH)}: split '{split}' ({e}; splits: {sorted(splits)})") from e
    chosen = []
    for ins in instructions:
      chosen.extend(splits[ins.splitname][ins.from_:ins.to])
    missing = sorted(set(chosen) - set(available))
    if missing:
      raise KeyError(f"{self._at(EPISODES_DIR)}: split '{split}' lists episodes without metadata "
                     f"rows: {missing[:10]}")
    if not chosen:
      raise ValueError(f"{self._at(INFO_PATH)}: split '{split}' has no episodes")
    return chosen

  def _check_files(self) -> None:
    """Every data file has the columns (and vector widths) read; every mp4 exists."""
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    columns = [self.action_key, self.state_key, "timestamp", "episode_index", "frame_index",
               "task_index"]
    columns += [k for k in self.cameras.values() if k and self.features[k]["dtype"] == "image"]
    for rel in self.files:
      path = os.path.join(self.directory, rel)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"{self._at(rel)}: data file not found")
      schema = pq.read_schema(path)
      for column in columns:
        if column not in schema.names:
          raise KeyError(f"{self._at(rel, column)}: missing column (columns: {schema.names})")
      for key, dim in ((self.action_key, self.action_dim), (self.state_key, self.proprio_dim)):
        width = getattr(schema.field(key).type, "list_size", None)
        if width is not None and width != dim:
          raise ValueError(f"{self._at(rel, key)}: shape [{width}] in the file, info.json says [{dim}]")
    for episode in self.episodes:
      for key, (rel, _) in episode.videos.items():
        if not os.path.isfile(os.path.join(self.directory, rel)):
          raise FileNotFoundError(f"{self._at(rel, key)}: video file of episode {episode.index} "
                                  "not found")

  def check_dims(self, action_dim: int, proprio_dim: int) -> None:
    """Raises ValueError when the action / state does not fit the padded dims."""
    if self.action_dim > action_dim:
      raise ValueError(f"dataset '{self.name}' has {self.action_dim} action dims "
                       f"('{self.action_key}') > action_dim {action_dim}")
    if self.proprio_dim > proprio_dim:
      raise ValueError(f"dataset '{self.name}' has {self.proprio_dim} proprio dims "
                       f"('{self.state_key}') > proprio_dim {proprio_dim}")

  # ---- windows, as RldsSource -----------------------------------------------------------------
  def windows(self, episodes_per_window: int, process_index: int = 0,
              process_count: int = 1) -> np.ndarray:
    """int64[N, 3] rows (data file index, first episode in file, episode count) for this host."""
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    rows = []
    for file_index, count in enumerate(self._counts):
      for start in range(0, count, episodes_per_window):
        rows.append((file_index, start, min(episodes_per_window, count - start)))
    mine = rows[process_index::process_count]
    if not mine:
      raise ValueError(f"LeRobot dataset '{self.name}' split '{self.split}': {len(rows)} windows of "
                       f"{episodes_per_window} episodes cannot feed {process_count} processes; "
                       "lower episodes_per_window")
    return np.asarray(mine, np.int64).reshape(-1, 3)

  def read_windows(self, windows):
    """tf.data.Dataset of the episode positions (int64 scalars, into `episodes`) of `windows`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    offsets = tf.constant(self._offsets)

    def read(window):
      start = offsets[window[0]] + window[1]
      return tf.data.Dataset.range(start, start + window[2])

    return tf.data.Dataset.from_tensor_slices(windows).flat_map(read)

  # ---- reading --------------------------------------------------------------------------------
  def _data(self, rel: str) -> dict:
    """Numeric columns of one data file (cached) and each episode's row range in it."""
    with self._lock:
      if rel in self._cache:
        self._cache.move_to_end(rel)
        return self._cache[rel]
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    columns = [self.action_key, self.state_key, "timestamp", "episode_index", "frame_index",
               "task_index"]
    table = pq.read_table(os.path.join(self.directory, rel), columns=columns)
    data = {k: _column(table, k, 0, self._at(rel, k)) for k in columns[2:]}
    data[self.action_key] = _column(table, self.action_key, self.action_dim,
                                    self._at(rel, self.action_key))
    data[self.state_key] = _column(table, self.state_key, self.proprio_dim,
                                   self._at(rel, self.state_key))
    episode_index = data["episode_index"]
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    stops = np.r_[starts[1:], len(episode_index)]
    data["_rows"] = {int(episode_index[a]): (int(a), int(b)) for a, b in zip(starts, stops)}
    with self._lock:
      self._cache[rel] = data
      while len(self._cache) > _DATA_CACHE_FILES:
        self._cache.popitem(last=False)
    return data

  def _rows(self, episode: Episode) -> tuple[dict, slice]:
    data = self._data(episode.data_file)
    if episode.index not in data["_rows"]:
      raise KeyError(f"{self._at(episode.data_file)}: no rows of episode {episode.index}")
    start, stop = data["_rows"][episode.index]
    if stop - start != episode.length:
      raise ValueError(f"{self._at(episode.data_file)}: episode {episode.index} has "
                       f"{stop - start} contiguous rows, its metadata says length {episode.length}")
    frame_index = data["frame_index"][start:stop]
    if not np.array_equal(frame_index, np.arange(episode.length)):
      raise ValueError(f"{self._at(episode.data_file, 'frame_index')}: episode {episode.index}'s "
                       "rows are not frames 0 .. length-1 in order")
    return data, slice(start, stop)

  def episode(self, position: int) -> dict[str, np.ndarray]:
    """The standardized trajectory (module doc) of `episodes[position]`, as numpy.

    image_primary / image_wrist: object[T] bytes, proprio float32[T, p], action float32[T, a],
    instruction object[T] bytes, episode_index int64 scalar.
    """
    episode = self.episodes[int(position)]
    data, rows = self._rows(episode)
    timestamps = data["timestamp"][rows].astype(np.float64)
    out = {}
    for camera, key in self.cameras.items():
      if key is None:
        out[f"image_{camera}"] = np.full(episode.length, b"", dtype=object)
      elif self.features[key]["dtype"] == "video":
        out[f"image_{camera}"] = self._video_frames(episode, key, timestamps)
      else:
        out[f"image_{camera}"] = self._parquet_images(episode, key)
    tasks = data["task_index"][rows]
    if tasks.size and (tasks.min() < 0 or tasks.max() >= len(self._tasks)):
      raise KeyError(f"{self._at(TASKS_PATH, 'task_index')}: episode {episode.index} uses task "
                     f"indices up to {tasks.max()}, the file has {len(self._tasks)} tasks")
    out["instruction"] = np.asarray([self._tasks[t] for t in tasks], dtype=object)
    out["proprio"] = data[self.state_key][rows]
    out["action"] = data[self.action_key][rows]
    out["episode_index"] = np.int64(episode.index)
    return out

  def _video_frames(self, episode: Episode, key: str, timestamps: np.ndarray) -> np.ndarray:
    """object[T] BMP bytes of the frames shown at from_timestamp + timestamps (float64[T], s)."""
    import av  # pylint: disable=g-import-not-at-top
    rel, from_timestamp = episode.videos[key]
    targets = from_timestamp + timestamps
    tolerance = TIMESTAMP_TOLERANCE_FRAMES / self.fps
    expected = self._image_hw(key)
    out = np.empty(len(targets), dtype=object)
    where = self._at(rel, key)
    try:
      container = av.open(os.path.join(self.directory, rel))
    except (OSError, av.FFmpegError) as e:
      raise ValueError(f"{where}: cannot open the video of episode {episode.index}: {e}") from e
    with container:
      if not container.streams.video:
        raise ValueError(f"{where}: no video stream")
      stream = container.streams.video[0]
      k, last = 0, None
      for restart in (False, True):   # a seek that lands past the first frame: decode from 0
        k, last = 0, None
        seek_to = 0 if restart else int((targets[0] + tolerance) / stream.time_base)
        container.seek(max(seek_to, 0), stream=stream, backward=True)
        for frame in container.decode(stream):
          if frame.pts is None:
            raise ValueError(f"{where}: a frame without a timestamp")
          last = float(frame.pts * stream.time_base)
          if last < targets[k] - tolerance:
            continue
          if last > targets[k] + tolerance:
            break
          if expected and (frame.height, frame.width) != expected:
            raise ValueError(f"{where}: frames are {frame.height}x{frame.width}, info.json says "
                             f"{expected[0]}x{expected[1]}")
          if self.image_size and (frame.height, frame.width) != self.image_size:
            pixels = frame.to_ndarray(format="bgr24", height=self.image_size[0],
                                      width=self.image_size[1], interpolation="AREA")
          else:
            pixels = frame.to_ndarray(format="bgr24")
          out[k] = bmp(pixels)
          k += 1
          if k == len(targets):
            return out
        if k > 0 or restart:
          break
    found = "the video ends" if last is None or last <= targets[k] else f"the next frame is at {last:.4f} s"
    raise ValueError(f"{where}: episode {episode.index} frame {k} should be at {targets[k]:.4f} s "
                     f"(from_timestamp {from_timestamp:.4f} + timestamp {timestamps[k]:.4f}); "
                     f"{found}")

  def _parquet_images(self, episode: Episode, key: str) -> np.ndarray:
    """object[T] encoded images (PNG / JPEG bytes) of an "image" feature stored in the data file."""
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    table = pq.read_table(os.path.join(self.directory, episode.data_file),
                          columns=[key, "frame_index"], filters=[("episode_index", "==", episode.index)])
    column = table.column(key).combine_chunks()
    blobs = column.field("bytes").to_pylist() if hasattr(column, "field") else column.to_pylist()
    if len(blobs) != episode.length or any(b is None for b in blobs):
      raise ValueError(f"{self._at(episode.data_file, key)}: episode {episode.index} has "
                       f"{len(blobs)} images (some empty?), length {episode.length}")
    order = np.argsort(np.asarray(table.column("frame_index")))
    return np.asarray([blobs[i] for i in order], dtype=object)

  def episodes_numpy(self):
    """Every episode of the split, in file order (inspection, conversion, tests)."""
    for position in range(self.num_episodes):
      yield self.episode(position)

  # ---- tf.data ---------------------------------------------------------------------------------
  def trajectory(self, position) -> dict[str, Any]:
    """TF form of `episode` for an int64 scalar tensor (a `tf.numpy_function`)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    def read(p):
      ep = self.episode(int(p))
      # Object arrays of bytes: numpy's fixed-width bytes would drop trailing zero bytes of a BMP.
      return (ep["image_primary"], ep["image_wrist"], ep["proprio"], ep["action"],
              ep["instruction"])

    primary, wrist, proprio, action, instruction = tf.numpy_function(
        read, [position], [tf.string, tf.string, tf.float32, tf.float32, tf.string], stateful=False)
    return {"image_primary": tf.ensure_shape(primary, [None]),
            "image_wrist": tf.ensure_shape(wrist, [None]),
            "proprio": tf.ensure_shape(proprio, [None, self.proprio_dim]),
            "action": tf.ensure_shape(action, [None, self.action_dim]),
            "instruction": tf.ensure_shape(instruction, [None])}

  def frames_fn(self, dataset_id: int, stats: Mapping[str, Any], cfg):
    """episode position -> frames, as `mixture.robot_frames_fn` makes them from an RLDS episode."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from vlajax.data import mixture, normalization, traj_transforms  # pylint: disable=g-import-not-at-top
    if cfg.normalization == "bounds":
      for key in ("action", "proprio") if self.proprio_dim else ("action",):
        lacking = [s for s in ("q01", "q99") if s not in stats[key]]
        if lacking:
          feature = self.action_key if key == "action" else self.state_key
          raise KeyError(f"{self._at(STATS_PATH, feature)}: normalization 'bounds' needs "
                         f"{lacking}, the statistics lack them (set lerobot_stats='computed')")

    def fn(position):
      traj = self.trajectory(position)
      traj["action"] = normalization.normalize(traj["action"], stats["action"], cfg.normalization,
                                               self.normalize_action)
      if self.proprio_dim:
        traj["proprio"] = normalization.normalize(traj["proprio"], stats["proprio"],
                                                  cfg.normalization, self.normalize_proprio)
      goal_seed = None
      if cfg.goal_relabel == "uniform":   # the same episode gets the same goals (as RLDS)
        goal_seed = mixture._seed(cfg.seed, dataset_id, position)  # pylint: disable=protected-access
      frames = traj_transforms.to_frames(
          traj, window=cfg.window, horizon=cfg.horizon, action_dim=cfg.action_dim,
          proprio_dim=cfg.proprio_dim, action_mask=self.action_mask, frame_stride=cfg.frame_stride,
          goal_relabel=cfg.goal_relabel, goal_seed=goal_seed)
      count = tf.shape(frames["action"])[0]
      frames["dataset_id"] = tf.fill([count], tf.constant(dataset_id, tf.int32))
      return frames

    return fn

  # ---- statistics -----------------------------------------------------------------------------
  def identity(self, stats_mode: str) -> dict:
    """What the cached statistics depend on (`normalization.load_or_compute`)."""
    return {"name": self.name, "directory": self.directory, "split": self.split,
            "format": f"lerobot_{CODEBASE_VERSION}", "episodes": self.num_episodes,
            "frames": self.num_frames, "stats": stats_mode, "action_key": self.action_key,
            "state_key": self.state_key}

  def stats(self, mode: str = "dataset") -> dict:
    """Action / proprio statistics in `normalization`'s format, plus counts and `fps`.

    "dataset": meta/stats.json (the whole dataset, as LeRobot normalizes); "computed": ours over the
    split's frames (`normalization.compute_stats`, with q01 / q99).
    """
    if mode not in STATS_MODES:
      raise ValueError(f"unknown lerobot_stats '{mode}' (valid: {', '.join(STATS_MODES)})")
    if mode == "computed":
      actions, states = [], []
      for episode in self.episodes:
        data, rows = self._rows(episode)
        actions.append(data[self.action_key][rows])
        states.append(data[self.state_key][rows])
      from vlajax.data import normalization  # pylint: disable=g-import-not-at-top
      stats = {"action": normalization.compute_stats(np.concatenate(actions), self.num_episodes)}
      if self.proprio_dim:
        stats["proprio"] = normalization.compute_stats(np.concatenate(states), self.num_episodes)
    else:
      path = os.path.join(self.directory, STATS_PATH)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"{self._at(STATS_PATH)}: not found (set lerobot_stats='computed')")
      with open(path) as f:
        on_disk = json.load(f)
      stats = {"action": self._dataset_stats(on_disk, self.action_key, self.action_dim)}
      if self.proprio_dim:
        stats["proprio"] = self._dataset_stats(on_disk, self.state_key, self.proprio_dim)
    stats["num_transitions"] = self.num_frames
    stats["num_trajectories"] = self.num_episodes
    stats["fps"] = self.fps
    return stats

  def _dataset_stats(self, on_disk: Mapping, key: str, dim: int) -> dict:
    if key not in on_disk:
      raise KeyError(f"{self._at(STATS_PATH, key)}: missing (has: {sorted(on_disk)})")
    out = {}
    for stat in ("mean", "std", "min", "max", "q01", "q99"):
      if stat not in on_disk[key]:
        if stat in ("q01", "q99"):
          continue
        raise KeyError(f"{self._at(STATS_PATH, key)}: lacks '{stat}'")
      values = np.asarray(on_disk[key][stat], np.float64).reshape(-1)
      if values.shape != (dim,):
        raise ValueError(f"{self._at(STATS_PATH, key)}: '{stat}' has shape {list(values.shape)}, "
                         f"the feature has [{dim}]")
      out[stat] = values.tolist()
    out["num_transitions"] = int(np.asarray(on_disk[key].get("count", [self.num_frames])).reshape(-1)[0])
    out["num_trajectories"] = self.num_episodes
    return out


def _column(table, key: str, dim: int, where: str) -> np.ndarray:
  """A parquet column as numpy: float32[N, dim] for vectors (list / fixed-size list), [N] for dim 0."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.compute as pc  # pylint: disable=g-import-not-at-top
  column = table.column(key).combine_chunks()
  if column.null_count:
    raise ValueError(f"{where}: {column.null_count} null values")
  if dim == 0:
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
      column = column.flatten()   # LeRobot's shape-[1] scalars may be stored as 1-lists
    return np.asarray(column)
  if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
          or pa.types.is_fixed_size_list(column.type)):
    if dim == 1:
      return np.asarray(column, np.float32)[:, None]
    raise ValueError(f"{where}: a scalar column ({column.type}), info.json says shape [{dim}]")
  lengths = np.asarray(pc.list_value_length(column))
  if len(lengths) and (lengths.min() != dim or lengths.max() != dim):
    raise ValueError(f"{where}: rows of length {sorted(set(lengths.tolist()))[:5]}, info.json says "
                     f"shape [{dim}]")
  return np.asarray(column.flatten(), np.float32).reshape(-1, dim)
