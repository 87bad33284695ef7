"""Writing LeRobot v3 datasets (parquet + mp4), and converting RLDS datasets to them.

  write_lerobot(directory, episodes, fps=10)          numpy episodes -> a v3 dataset directory
  rlds_to_lerobot(rlds_dir, name, directory, fps=10)  an RLDS split, standardized by the OXE registry
                                                      (`oxe_registry.standardize`) -> a v3 directory
  python -m experiments.convert_to_lerobot ...        the same from the command line

`vlajax.data.lerobot.LeRobotSource` reads the result (so does LeRobot: the layout is `lerobot` module
doc's). An episode for `write_lerobot` is a dict keyed by LeRobot feature names:

  {"observation.state": float32[T, p], "action": float32[T, a],
   "observation.images.<camera>": uint8[T, h, w, 3],   # any number of cameras: one mp4 stream each
   "task": str | sequence of T str}                     # the instruction, per episode or per frame

other numeric arrays [T] / [T, d] become extra features. Episodes share files: `episodes_per_data_file`
per parquet and `episodes_per_video_file` per mp4 (they may differ, as in LeRobot, where each rotates
by size), `chunks_size` files per chunk-XXX directory. Every episode starts on a keyframe, so a reader
seeks straight to it. Video goes through PyAV's encoder: "libx264" / "yuv420p" / crf 23 by default,
"libx264rgb" / "rgb24" / crf 0 is lossless, "libsvtav1" is LeRobot's own default. With
`use_videos=False` cameras are PNGs inside the parquet files ("image" features). meta/stats.json holds
mean, std, min, max, count, q01, q99 of numeric features and per-channel mean, std, min, max (in
[0, 1], shape [3, 1, 1]) of cameras. meta/info.json is written last: a directory without it is not a
dataset (an interrupted conversion is not mistaken for one).
"""
from __future__ import annotations

import fractions
import io
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np

from vlajax.data import lerobot, normalization

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
# LeRobot's file-size limits (it rotates files by size; recorded for its writer when appending).
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 500
_DEFAULT_FEATURES = {k: {"dtype": d, "shape": [1], "names": None} for k, d in (
    ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
    ("index", "int64"), ("task_index", "int64"))}


def _is_camera(value) -> bool:
  array = np.asarray(value)
  return array.dtype == np.uint8 and array.ndim == 4 and array.shape[-1] == 3


class _Video:
  """One mp4 being written: episodes appended as consecutive frames, each from a keyframe."""

  def __init__(self, path: str, fps: float, height: int, width: int, codec: str, pix_fmt: str,
               crf: int | None, gop: int | None):
    import av  # pylint: disable=g-import-not-at-top
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = {} if crf is None else {"crf": str(crf)}
    if gop is not None:
      options["g"] = str(gop)
    rate = fractions.Fraction(fps).limit_denominator(1001)
    self.container = av.open(path, mode="w")
    self.stream = self.container.add_stream(codec, rate=rate, options=options)
    self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix_fmt
    self.stream.time_base = 1 / rate
    self.fps = fps
    self.frames = 0
    self.episodes = 0

  def add(self, frames: np.ndarray) -> float:
    """Appends uint8 [T, h, w, 3] RGB frames; returns their from_timestamp in the file (s)."""
    import av  # pylint: disable=g-import-not-at-top
    start = self.frames
    for t, pixels in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
      frame.pts = self.frames
      if t == 0:
        frame.pict_type = av.video.frame.PictureType.I
      for packet in self.stream.encode(frame):
        self.container.mux(packet)
      self.frames += 1
    self.episodes += 1
    return start / self.fps

  def close(self) -> None:
    for packet in self.stream.encode():
      self.container.mux(packet)
    self.container.close()


class _Stats:
  """Running statistics of one feature: numeric values kept (exact quantiles), image moments."""

  def __init__(self, camera: bool):
    self.camera = camera
    self.values: list[np.ndarray] = []
    self.sum = self.sumsq = 0.0
    self.min = np.full(3, np.inf)
    self.max = np.full(3, -np.inf)
    self.count = 0    # frames
    self.pixels = 0

  def add(self, value: np.ndarray) -> None:
    if not self.camera:
      self.values.append(np.asarray(value, np.float64).reshape(len(value), -1))
      return
    pixels = np.asarray(value, np.float64).reshape(-1, 3) / 255.0
    self.sum = self.sum + pixels.sum(0)
    self.sumsq = self.sumsq + np.square(pixels).sum(0)
    self.min = np.minimum(self.min, pixels.min(0))
    self.max = np.maximum(self.max, pixels.max(0))
    self.count += len(value)
    self.pixels += len(pixels)

  def result(self) -> dict:
    if not self.camera:
      s = normalization.compute_stats(np.concatenate(self.values))
      return {k: s[k] for k in ("mean", "std", "min", "max", "q01", "q99")} | {
          "count": [s["num_transitions"]]}
    mean = self.sum / self.pixels
    std = np.sqrt(np.maximum(self.sumsq / self.pixels - np.square(mean), 0.0))
    channel = lambda x: np.asarray(x).reshape(3, 1, 1).tolist()
    return {"mean": channel(mean), "std": channel(std), "min": channel(self.min),
            "max": channel(self.max), "count": [self.count]}


def _png(pixels: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def write_lerobot(directory: str, episodes: Iterable[Mapping[str, Any]], *, fps: float,
                  robot_type: str = "unknown", episodes_per_data_file: int = 50,
                  episodes_per_video_file: int = 50, chunks_size: int = 1000,
                  codec: str = "libx264", pix_fmt: str = "yuv420p", crf: int | None = 23,
                  gop: int | None = None, use_videos: bool = True) -> str:
  """Writes `episodes` (module doc; any iterable, read once) as a LeRobot v3 dataset; returns it."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  if lerobot.is_lerobot_dir(directory):
    raise FileExistsError(f"'{directory}' already holds a LeRobot dataset ({lerobot.INFO_PATH})")
  if min(episodes_per_data_file, episodes_per_video_file, chunks_size) < 1:
    raise ValueError("episodes_per_data_file, episodes_per_video_file and chunks_size must be >= 1")
  fps = int(fps) if float(fps).is_integer() else float(fps)   # LeRobot records integer rates
  features: dict[str, dict] | None = None
  tasks: dict[str, int] = {}
  rows: list[dict] = []
  stats: dict[str, _Stats] = {}
  data_writer, data_files, data_episodes, data_schema = None, 0, 0, None
  videos: dict[str, _Video] = {}
  video_files: dict[str, int] = {}
  total = 0

  for index, episode in enumerate(episodes):
    episode = dict(episode)
    text = episode.pop("task", "")
    if "action" not in episode:
      raise KeyError(f"episode {index}: needs 'action' (has: {sorted(episode)})")
    length = len(episode["action"])
    if length < 1:
      raise ValueError(f"episode {index}: no frames")
    texts = [text] * length if isinstance(text, (str, bytes)) else list(text)
    texts = [t.decode() if isinstance(t, bytes) else str(t) for t in texts]
    if len(texts) != length:
      raise ValueError(f"episode {index}: 'task' has {len(texts)} entries, 'action' {length} frames")
    if features is None:
      features = _features(episode, fps, codec, pix_fmt, use_videos)
      stats = {k: _Stats(f["dtype"] in ("video", "image")) for k, f in features.items()}
    if sorted(episode) != sorted(features):
      raise KeyError(f"episode {index}: features {sorted(episode)} differ from the first episode's "
                     f"{sorted(features)}")
    for t in texts:
      tasks.setdefault(t, len(tasks))
    columns = {}
    for key, feature in features.items():
      value = np.asarray(episode[key])
      if len(value) != length:
        raise ValueError(f"episode {index}: feature '{key}' has {len(value)} frames, 'action' {length}")
      if feature["dtype"] in ("video", "image"):
        if list(value.shape[1:]) != feature["shape"]:
          raise ValueError(f"episode {index}: feature '{key}' has shape {list(value.shape[1:])}, "
                           f"the first episode's is {feature['shape']}")
        if feature["dtype"] == "image":
          columns[key] = pa.array([{"bytes": _png(v), "path": None} for v in value],
                                  pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
      else:
        value = value.astype(feature["dtype"]).reshape(length, -1)
        if value.shape[1] != feature["shape"][0]:
          raise ValueError(f"episode {index}: feature '{key}' has shape [{value.shape[1]}], the "
                           f"first episode's is {feature['shape']}")
        columns[key] = (pa.array(value[:, 0]) if feature["shape"] == [1] else
                        pa.FixedSizeListArray.from_arrays(pa.array(value.reshape(-1)), value.shape[1]))
      stats[key].add(value)
    frame_index = np.arange(length, dtype=np.int64)
    columns["timestamp"] = pa.array((frame_index / fps).astype(np.float32))
    columns["frame_index"] = pa.array(frame_index)
    columns["episode_index"] = pa.array(np.full(length, index, np.int64))
    columns["index"] = pa.array(total + frame_index)
    columns["task_index"] = pa.array(np.asarray([tasks[t] for t in texts], np.int64))
    table = pa.table(columns)

    if data_writer is None or data_episodes == episodes_per_data_file:
      if data_writer is not None:
        data_writer.close()
        data_files += 1
      chunk, file = divmod(data_files, chunks_size)
      path = os.path.join(directory, DATA_PATH.format(chunk_index=chunk, file_index=file))
      os.makedirs(os.path.dirname(path), exist_ok=True)
      data_schema = table.schema
      data_writer, data_episodes = pq.ParquetWriter(path, data_schema), 0
    data_writer.write_table(table.cast(data_schema))
    data_episodes += 1
    chunk, file = divmod(data_files, chunks_size)
    row = {"episode_index": index, "tasks": list(dict.fromkeys(texts)), "length": length,
           "data/chunk_index": chunk, "data/file_index": file,
           "dataset_from_index": total, "dataset_to_index": total + length}
    for key, feature in features.items():
      if feature["dtype"] != "video":
        continue
      video = videos.get(key)
      if video is None or video.episodes == episodes_per_video_file:
        if video is not None:
          video.close()
          video_files[key] += 1
        video_files.setdefault(key, 0)
        chunk, file = divmod(video_files[key], chunks_size)
        path = os.path.join(directory, VIDEO_PATH.format(video_key=key, chunk_index=chunk,
                                                         file_index=file))
        h, w, _ = feature["shape"]
        video = videos[key] = _Video(path, fps, h, w, codec, pix_fmt, crf, gop)
      start = video.add(np.asarray(episode[key]))
      chunk, file = divmod(video_files[key], chunks_size)
      row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                  f"videos/{key}/from_timestamp": start,
                  f"videos/{key}/to_timestamp": start + length / fps})
    row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
    rows.append(row)
    total += length

  if features is None:
    raise ValueError("no episodes to write")
  data_writer.close()
  for video in videos.values():
    video.close()
  _write_parquet(directory, EPISODES_PATH, pa.Table.from_pylist(rows))
  _write_tasks(directory, tasks)
  with open(os.path.join(directory, lerobot.STATS_PATH), "w") as f:
    json.dump({k: s.result() for k, s in stats.items()}, f, indent=2)
  info = {
      "codebase_version": lerobot.CODEBASE_VERSION, "robot_type": robot_type,
      "total_episodes": len(rows), "total_frames": total, "total_tasks": len(tasks),
      "chunks_size": chunks_size, "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
      "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB, "fps": fps,
      "splits": {"train": f"0:{len(rows)}"}, "data_path": DATA_PATH,
      "video_path": VIDEO_PATH if videos else None,
      "features": {**features, **_DEFAULT_FEATURES},
  }
  tmp = os.path.join(directory, lerobot.INFO_PATH + ".tmp")
  with open(tmp, "w") as f:
    json.dump(info, f, indent=4)
  os.replace(tmp, os.path.join(directory, lerobot.INFO_PATH))
  return directory


def _features(episode: Mapping[str, Any], fps: float, codec: str, pix_fmt: str,
              use_videos: bool) -> dict[str, dict]:
  """info.json features of the first episode (cameras: video or image; the rest: numeric)."""
  features = {}
  for key, value in episode.items():
    value = np.asarray(value)
    if _is_camera(value):
      h, w = value.shape[1:3]
      feature = {"dtype": "video" if use_videos else "image", "shape": [h, w, 3],
                 "names": ["height", "width", "channels"]}
      if use_videos:
        import av  # pylint: disable=g-import-not-at-top
        feature["info"] = {"video.height": h, "video.width": w,
                           "video.codec": av.codec.Codec(codec, "w").canonical_name,
                           "video.pix_fmt": pix_fmt, "video.is_depth_map": False,
                           "video.fps": fps, "video.channels": 3, "has_audio": False}
      features[key] = feature
    elif value.dtype.kind in "fiub" and value.ndim in (1, 2):
      dtype = "float32" if value.dtype.kind == "f" else ("bool" if value.dtype.kind == "b" else "int64")
      features[key] = {"dtype": dtype, "shape": [1 if value.ndim == 1 else value.shape[1]],
                       "names": None}
    else:
      raise ValueError(f"feature '{key}': {value.dtype} {list(value.shape)} is neither a camera "
                       "(uint8 [T, h, w, 3]) nor numeric [T] / [T, d]")
  return features


def _write_parquet(directory: str, rel: str, table) -> None:
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, rel)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pq.write_table(table, path)


def _write_tasks(directory: str, tasks: Mapping[str, int]) -> None:
  """meta/tasks.parquet as pandas writes LeRobot's DataFrame (task strings as its index "task")."""
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()),
                    "task": pa.array(list(tasks), pa.string())})
  pandas = {"index_columns": ["task"], "column_indexes": [],
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                         "numpy_type": "int64", "metadata": None},
                        {"name": "task", "field_name": "task", "pandas_type": "unicode",
                         "numpy_type": "object", "metadata": None}],
            "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
  table = table.replace_schema_metadata({b"pandas": json.dumps(pandas).encode()})
  _write_parquet(directory, lerobot.TASKS_PATH, table)


def rlds_to_lerobot(rlds_dir: str, name: str, directory: str, *, fps: float, split: str = "train",
                    **write_kwargs) -> str:
  """Converts split `split` of the RLDS dataset `name` (OXE registry) at `rlds_dir` to LeRobot v3.

  Each episode is standardized first (`oxe_registry.standardize`): `observation.state` is the
  proprio, `action` the common action, cameras `observation.images.primary` / `.wrist`, the task
  the per-step instruction. RLDS records no frame rate: `fps` is the control rate. `write_kwargs`
  go to `write_lerobot`.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vlajax.data import oxe_registry, rlds  # pylint: disable=g-import-not-at-top
  spec = oxe_registry.spec(name)
  source = rlds.RldsSource(rlds_dir, split)

  def episodes():
    for episode in source.episodes():
      traj = oxe_registry.standardize(name, episode)
      out = {"observation.state": traj["proprio"].numpy(), "action": traj["action"].numpy(),
             "task": [t.decode() for t in traj["instruction"].numpy()]}
      for camera, key in (("primary", spec.primary_image), ("wrist", spec.wrist_image)):
        if key:
          out[f"observation.images.{camera}"] = np.stack([
              tf.io.decode_image(blob, channels=3, expand_animations=False).numpy()
              for blob in traj[f"image_{camera}"].numpy()])
      yield out

  return write_lerobot(directory, episodes(), fps=fps, robot_type=name, **write_kwargs)
