"""LeRobot v3 datasets (parquet + mp4 on disk) as a `vlajax.data` source, alone and mixed with RLDS.

The toy dataset is written by `lerobot_convert.write_lerobot` with PyAV's lossless H.264 (RGB, crf
0), so decoded frames equal the source pixels exactly: 5 episodes (4..8 frames, 30 in all), 2
tasks (episode 4 switches task halfway), cameras `observation.images.top` / `.wrist`, episodes
0-2 in one data file and 3-4 in another, episodes 0-3 in one mp4 per camera and 4 in another,
one file per chunk directory. A frame's `observation.state[0]` is `100 * episode + t`, so a batch
row names its source row.
"""
import collections
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import data_testlib as lib
from vlajax.data import lerobot, lerobot_convert, normalization
from vlajax.data import loader as loader_lib

TASKS = ("pick up the red cube", "open the drawer")
LOSSLESS = dict(codec="libx264rgb", pix_fmt="rgb24", crf=0)
HW = (32, 40)


def _episodes():
  rng = np.random.default_rng(0)
  episodes = []
  for k in range(5):
    length = 4 + k
    state = rng.normal(size=(length, 5)).astype(np.float32)
    state[:, 0] = 100 * k + np.arange(length)
    task = [TASKS[k % 2]] * length
    if k == 4:
      task[length // 2:] = [TASKS[1]] * (length - length // 2)
    episodes.append({
        "observation.state": state,
        "action": rng.normal(size=(length, 6)).astype(np.float32),
        "observation.images.top": rng.integers(0, 256, (length, *HW, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (length, *HW, 3), dtype=np.uint8),
        "task": task})
  return episodes


EPISODES = _episodes()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("lerobot") / "toy")
  return lerobot_convert.write_lerobot(directory, EPISODES, fps=15, episodes_per_data_file=3,
                                       episodes_per_video_file=4, chunks_size=1, **LOSSLESS)


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
  """The RLDS `bridge` test dataset (8 episodes) and its LeRobot v3 conversion (H.264 4:4:4, crf 0:
  lossless in YUV, so within RGB <-> YUV rounding of the source)."""
  root = lib.oxe_root(("bridge",))
  converted = str(tmp_path_factory.mktemp("converted") / "bridge_lerobot")
  lerobot_convert.rlds_to_lerobot(os.path.join(root, "bridge", "0.1.0"), "bridge", converted,
                                  fps=5, episodes_per_data_file=3, episodes_per_video_file=5,
                                  codec="libx264", pix_fmt="yuv444p", crf=0)
  return root, converted


def _loader(weights, lerobot_dirs, root="", state=None, process_index=None, process_count=None,
            **overrides):
  cfg = lib.small_config(root, weights, **overrides)
  cfg.lerobot_dirs = dict(lerobot_dirs)
  return loader_lib.DataLoader(cfg, stats_dir=lib.stats_dir(), state=state,
                               process_index=process_index, process_count=process_count)


def _origin(proprio_row) -> tuple[int, int]:
  value = int(round(float(proprio_row[0])))
  return value // 100, value % 100


def test_written_layout_is_lerobot_v3(toy):
  with open(os.path.join(toy, "meta/info.json")) as f:
    info = json.load(f)
  assert info["codebase_version"] == "v3.0" and info["fps"] == 15
  assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (5, 30, 2)
  assert info["features"]["observation.images.top"]["dtype"] == "video"
  assert info["features"]["action"]["shape"] == [6]
  files = sorted(os.path.relpath(os.path.join(d, f), toy) for d, _, fs in os.walk(toy) for f in fs)
  assert [f for f in files if f.startswith("data/")] == [
      "data/chunk-000/file-000.parquet", "data/chunk-001/file-000.parquet"]
  assert [f for f in files if f.startswith("videos/observation.images.top")] == [
      "videos/observation.images.top/chunk-000/file-000.mp4",
      "videos/observation.images.top/chunk-001/file-000.mp4"]
  episodes = pq.read_table(os.path.join(toy, "meta/episodes/chunk-000/file-000.parquet")).to_pylist()
  assert [e["data/chunk_index"] for e in episodes] == [0, 0, 0, 1, 1]
  assert [e["videos/observation.images.top/chunk_index"] for e in episodes] == [0, 0, 0, 0, 1]
  assert episodes[3]["videos/observation.images.top/from_timestamp"] == pytest.approx(15 / 15)
  assert episodes[4]["tasks"] == [TASKS[0], TASKS[1]]
  data = pq.read_table(os.path.join(toy, "data/chunk-001/file-000.parquet"))
  assert data.column("episode_index").to_pylist()[0] == 3 and data.column("index")[0].as_py() == 15
  with open(os.path.join(toy, "meta/stats.json")) as f:
    stats = json.load(f)
  np.testing.assert_allclose(stats["action"]["mean"],
                             np.concatenate([e["action"] for e in EPISODES]).mean(0), rtol=1e-5)


def test_batches_equal_the_source_rows(toy):
  """Actions (chunked), proprio (history), both cameras and instructions of every frame, one epoch."""
  h, w = 3, 2
  loader = _loader({"toy": 1.0}, {"toy": toy}, normalization="none", image_size=HW, augment=False,
                   horizon=h, window=w)
  assert loader.streams[0].source.fps == 15 and loader.stats["toy"]["fps"] == 15
  seen = []
  while len(seen) < 30:
    batch = loader.next_local()
    obs = batch["observation"]
    assert obs["image_primary"].shape == (8, w, *HW, 3) and obs["image_primary"].dtype == np.uint8
    assert batch["action"].shape == (8, h, 8) and batch["action"].dtype == np.float32
    for row in range(8):
      k, t = _origin(obs["proprio"][row, -1])
      seen.append((k, t))
      ep = EPISODES[k]
      length = len(ep["action"])
      for j in range(w):                              # history t-1, t (clamped, masked)
        step = max(t - w + 1 + j, 0)
        assert obs["timestep_pad_mask"][row, j] == (t - w + 1 + j >= 0)
        np.testing.assert_array_equal(obs["proprio"][row, j, :5], ep["observation.state"][step])
        np.testing.assert_array_equal(obs["image_primary"][row, j], ep["observation.images.top"][step])
        np.testing.assert_array_equal(obs["image_wrist"][row, j], ep["observation.images.wrist"][step])
      assert obs["proprio_mask"][row, -1].tolist() == [True] * 5 + [False] * 3
      for j in range(h):                              # chunk a_t .. a_{t+H-1} at 15 fps
        step = min(t + j, length - 1)
        np.testing.assert_array_equal(batch["action"][row, j, :6], ep["action"][step])
        assert batch["action_pad_mask"][row, j].tolist() == [t + j < length] * 6 + [False] * 2
      assert batch["instruction"][row] == ep["task"][t].encode()
      assert batch["dataset_name"][row] == b"toy" and batch["is_robot"][row]
      assert obs["image_mask"]["primary"][row, -1] and obs["image_mask"]["wrist"][row, -1]
  # One epoch: every frame exactly once.
  expected = {(k, t) for k, ep in enumerate(EPISODES) for t in range(len(ep["action"]))}
  assert len(set(seen[:30])) == 30 and set(seen[:30]) == expected


def test_same_batch_format_as_rlds_and_mixture_follows_weights(toy, bridge):
  root, _ = bridge
  common = dict(global_batch_size=32, image_size=(4, 4), augment=False)
  rlds_batch = _loader({"bridge": 1.0}, {}, root, **common).next_local()
  lerobot_batch = _loader({"toy": 1.0}, {"toy": toy}, root, **common).next_local()
  shapes = lambda b: jax.tree_util.tree_map(lambda x: (np.asarray(x).shape, np.asarray(x).dtype), b)
  assert shapes(rlds_batch) == shapes(lerobot_batch)

  weights = {"bridge": 1.0, "toy": 3.0}
  loader = _loader(weights, {"toy": toy}, root, **common)
  counts, n = collections.Counter(), 0
  for _ in range(12):
    batch = loader.next_local()
    for row, name in enumerate(batch["dataset_name"]):
      counts[name.decode()] += 1
      if name == b"bridge":
        assert lib.origin(batch["instruction"][row])[0] == "bridge"
      else:
        assert batch["instruction"][row].decode() in TASKS
    n += len(batch["dataset_name"])
  # What a served policy needs to un-normalize either dataset (vla.data_sources' normalization.json).
  assert loader.normalization_spec("toy") == {
      "action_dim": 6, "action_normalize_mask": [True] * 6, "proprio_dim": 5,
      "proprio_normalize_mask": [True] * 5}
  assert loader.normalization_spec("bridge")["action_normalize_mask"] == [True] * 6 + [False]
  for name, weight in weights.items():
    p = weight / sum(weights.values())
    assert abs(counts[name] / n - p) < 4 * np.sqrt(p * (1 - p) / n), (name, counts, n)


def test_resume_from_state_gives_the_same_batches(toy, bridge):
  root, _ = bridge
  args = ({"bridge": 1.0, "toy": 1.0}, {"toy": toy}, root)
  kw = dict(global_batch_size=4, image_size=(8, 8))   # frames scaled at decode, augmented
  reference = _loader(*args, **kw)
  for _ in range(20):                                  # ~40 toy frames: past its first epoch
    reference.next_local()
  saved = reference.state()
  assert json.loads(json.dumps(saved)) == saved and saved["streams"]["toy"]["block"] >= 2
  expected = [reference.next_local() for _ in range(5)]
  resumed = _loader(*args, state=saved, **kw)
  for a, b in zip(expected, [resumed.next_local() for _ in range(5)]):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert resumed.state() == reference.state()


def test_converted_rlds_equals_its_source_and_the_decoded_video(bridge):
  import av
  import tensorflow as tf
  from vlajax.data import oxe_registry, rlds
  root, converted = bridge
  source = lerobot.LeRobotSource(converted)
  assert source.fps == 5 and len(source.files) == 3 and source.cameras["wrist"] is None
  rlds_source = rlds.RldsSource(os.path.join(root, "bridge", "0.1.0"))
  originals = {}
  for episode in rlds_source.episodes():
    traj = oxe_registry.standardize("bridge", episode)
    originals[lib.origin(traj["instruction"].numpy()[0])[1]] = traj
  # The mp4 decoded front to back, independently of the source's seeking.
  decoded = {}
  for rel in sorted({e.videos["observation.images.primary"][0] for e in source.episodes}):
    with av.open(os.path.join(converted, rel)) as container:
      decoded[rel] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  errors = []
  for position, meta in enumerate(source.episodes):
    ep = source.episode(position)
    traj = originals[lib.origin(ep["instruction"][0])[1]]
    np.testing.assert_array_equal(ep["action"], traj["action"].numpy())
    np.testing.assert_array_equal(ep["proprio"], traj["proprio"].numpy())
    assert list(ep["instruction"]) == list(traj["instruction"].numpy())
    rel, start = meta.videos["observation.images.primary"]
    first = int(round(start * source.fps))
    for t, blob in enumerate(ep["image_primary"]):
      image = tf.io.decode_image(blob).numpy()
      np.testing.assert_array_equal(image, decoded[rel][first + t])
      errors.append(np.abs(image.astype(int) - tf.io.decode_png(traj["image_primary"][t]).numpy()))
  assert np.max(errors) <= 3 and np.mean(errors) < 1     # RGB -> YUV -> RGB rounding only


def test_statistics_from_stats_json_or_computed(toy, tmp_path):
  loader = _loader({"toy": 1.0}, {"toy": toy}, normalization="normal", image_size=(8, 8),
                   augment=False)
  with open(os.path.join(toy, "meta/stats.json")) as f:
    on_disk = json.load(f)
  assert loader.stats["toy"]["action"]["std"] == pytest.approx(on_disk["action"]["std"])
  batch = loader.next_local()
  for row in range(8):
    proprio = normalization.unnormalize(batch["observation"]["proprio"][row, -1, :5],
                                        loader.stats["toy"]["proprio"])
    k, t = _origin(proprio)
    np.testing.assert_allclose(loader.unnormalize_action(batch["action"][row, 0], "toy"),
                               EPISODES[k]["action"][t], atol=1e-5)
    mean, std = (np.asarray(on_disk["action"][s]) for s in ("mean", "std"))
    np.testing.assert_allclose(batch["action"][row, 0, :6],
                               (EPISODES[k]["action"][t] - mean) / (std + 1e-8), rtol=1e-4, atol=1e-5)
  # Computed over a split (first 3 episodes) instead of the whole dataset's stats.json.
  source = lerobot.LeRobotSource(toy, "train[:3]")
  computed = source.stats("computed")
  actions = np.concatenate([e["action"] for e in EPISODES[:3]])
  assert computed["num_transitions"] == len(actions) and computed["num_trajectories"] == 3
  np.testing.assert_allclose(computed["action"]["mean"], actions.mean(0), rtol=1e-5)
  np.testing.assert_allclose(computed["action"]["q99"], np.percentile(actions, 99, axis=0), rtol=1e-5)
  assert source.stats("dataset")["action"]["mean"] == pytest.approx(on_disk["action"]["mean"])
  # "bounds" needs q01 / q99, which older stats.json files lack: the error names file and feature.
  copy = _copy(toy, tmp_path)
  del on_disk["action"]["q01"]
  with open(os.path.join(copy, "meta/stats.json"), "w") as f:
    json.dump(on_disk, f)
  with pytest.raises(KeyError, match=r"meta/stats.json', feature 'action'.*q01"):
    _loader({"toy2": 1.0}, {"toy2": copy}, normalization="bounds")
  _loader({"toy2": 1.0}, {"toy2": copy}, normalization="bounds", lerobot_stats="computed")


def test_episodes_are_sharded_over_hosts_by_window(toy):
  import tensorflow as tf
  source = lerobot.LeRobotSource(toy)
  per_host = []
  for host in range(2):
    windows = source.windows(2, host, 2)
    positions = list(source.read_windows(tf.constant(windows)).as_numpy_iterator())
    per_host.append({source.episodes[p].index for p in positions})
    for file_index, start, count in windows:                  # windows stay inside one data file
      files = {source.episodes[p].data_file for p in range(source._offsets[file_index] + start,
                                                            source._offsets[file_index] + start + count)}
      assert files == {source.files[file_index]}
  assert not per_host[0] & per_host[1] and per_host[0] | per_host[1] == set(range(5))
  loader = _loader({"toy": 1.0}, {"toy": toy}, normalization="none", image_size=(8, 8),
                   augment=False, process_index=1, process_count=2)
  frames = {_origin(p)[0] for _ in range(3) for p in loader.next_local()["observation"]["proprio"][:, -1]}
  assert frames <= per_host[1]


def test_parquet_images_and_pandas_task_index(tmp_path):
  """"image" features (PNG in the data parquet) and a tasks.parquet whose strings are pandas' index."""
  directory = lerobot_convert.write_lerobot(str(tmp_path / "img"), EPISODES[:2], fps=10,
                                            use_videos=False)
  tasks = pa.table({"task_index": [1, 0], "__index_level_0__": [TASKS[1], TASKS[0]]})
  meta = {"index_columns": ["__index_level_0__"], "columns": []}
  pq.write_table(tasks.replace_schema_metadata({b"pandas": json.dumps(meta).encode()}),
                 os.path.join(directory, "meta/tasks.parquet"))
  source = lerobot.LeRobotSource(directory)
  import tensorflow as tf
  for position in range(2):
    ep = source.episode(position)
    k = int(ep["episode_index"])
    assert list(ep["instruction"]) == [t.encode() for t in EPISODES[k]["task"]]
    for t, blob in enumerate(ep["image_wrist"]):
      np.testing.assert_array_equal(tf.io.decode_png(blob).numpy(),
                                    EPISODES[k]["observation.images.wrist"][t])


_LATE = """
from vlajax.data import config, loader as loader_lib
cfg = config.default_config()
cfg.weights = {{"late": 1.0}}
cfg.lerobot_dirs = {{"late": "{directory}"}}
cfg.update(dict(train_split="train", image_size=(32, 40), global_batch_size=4, action_dim=8,
                proprio_dim=8))
loader = loader_lib.DataLoader(cfg, process_index=0, process_count=1)
try:
  for _ in range(16):
    loader.next_local()
except Exception as e:  # the error surfaces through tf.data
  print(type(e).__name__ + ": " + str(e))
"""


def _copy(toy, tmp_path):
  return shutil.copytree(toy, str(tmp_path / "copy"))


def _edit_json(path, edit):
  with open(path) as f:
    data = json.load(f)
  edit(data)
  with open(path, "w") as f:
    json.dump(data, f)


def test_errors_name_dataset_file_and_feature(toy, tmp_path):
  with pytest.raises(KeyError, match=r"'toy'.*meta/info.json', feature 'observation.joints': missing"):
    lerobot.LeRobotSource(toy, state_key="observation.joints")
  with pytest.raises(KeyError, match=r"feature 'observation.images.side': not a camera"):
    lerobot.LeRobotSource(toy, cameras=("observation.images.side",))
  with pytest.raises(KeyError, match=r"split 'val'"):
    lerobot.LeRobotSource(toy, "val")
  with pytest.raises(ValueError, match=r"'toy' has 6 action dims \('action'\) > action_dim 4"):
    _loader({"toy": 1.0}, {"toy": toy}, action_dim=4)
  copy = _copy(toy, tmp_path)
  info = os.path.join(copy, "meta/info.json")
  _edit_json(info, lambda d: d["features"]["action"].update(shape=[7]))
  with pytest.raises(ValueError, match=r"file 'data/chunk-000/file-000.parquet', feature 'action': "
                                       r"shape \[6\] in the file, info.json says \[7\]"):
    lerobot.LeRobotSource(copy)
  _edit_json(info, lambda d: d["features"]["action"].update(shape=[6]))
  _edit_json(info, lambda d: d["features"]["observation.images.top"].update(shape=[30, 40, 3]))
  with pytest.raises(ValueError, match=r"chunk-000/file-000.mp4', feature 'observation.images.top': "
                                       r"frames are 32x40, info.json says 30x40"):
    lerobot.LeRobotSource(copy).episode(0)
  _edit_json(info, lambda d: d["features"]["observation.images.top"].update(shape=[32, 40, 3]))
  # An episode whose video starts later than the file's last frame.
  episodes = os.path.join(copy, "meta/episodes/chunk-000/file-000.parquet")
  table = pq.read_table(episodes).to_pylist()
  table[4]["videos/observation.images.wrist/from_timestamp"] = 2.0
  pq.write_table(pa.Table.from_pylist(table), episodes)
  source = lerobot.LeRobotSource(copy)
  with pytest.raises(ValueError, match=r"videos/observation.images.wrist/chunk-001/file-000.mp4', "
                                       r"feature 'observation.images.wrist': episode 4 frame 0 should "
                                       r"be at 2.0000 s"):
    source.episode(4)
  # Through the loader (tf.data), in a fresh process that must also exit: a loader left alive to
  # interpreter shutdown with video reads in flight hung there before `loader` closed it at exit.
  run = subprocess.run([sys.executable, "-c", _LATE.format(directory=copy)], capture_output=True,
                       text=True, timeout=240, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert run.returncode == 0, run.stderr[-2000:]
  assert re.search(r"CorruptDataError: .*'late'.*wrist/chunk-001/file-000.mp4', feature "
                   r"'observation.images.wrist': episode 4 frame 0 should be at 2.0000 s", run.stdout)
  os.remove(os.path.join(copy, "videos/observation.images.wrist/chunk-001/file-000.mp4"))
  with pytest.raises(FileNotFoundError, match=r"'videos/observation.images.wrist/chunk-001/file-000.mp4', "
                                              r"feature 'observation.images.wrist': video file of "
                                              r"episode 4 not found"):
    lerobot.LeRobotSource(copy)
  _edit_json(info, lambda d: d.update(codebase_version="v2.1"))
  with pytest.raises(ValueError, match=r"codebase_version 'v2.1'"):
    lerobot.LeRobotSource(copy)
  with pytest.raises(FileNotFoundError, match=r"not a LeRobot dataset"):
    lerobot.LeRobotSource(str(tmp_path))


def test_which_datasets_are_read_as_lerobot(toy, tmp_path):
  cfg = lib.small_config(str(tmp_path), {})
  cfg.lerobot_dirs = {"configured": toy}
  os.symlink(toy, tmp_path / "under_root")
  found = lerobot.dataset_dirs(cfg, ["configured", "given", "under_root", "bridge"],
                               {"given": toy, "bridge": str(tmp_path / "bridge")})
  assert found == {"configured": toy, "given": toy, "under_root": str(tmp_path / "under_root")}


def test_inspect_data_reports_a_lerobot_dataset(toy):
  from experiments import inspect_data  # pylint: disable=import-outside-toplevel
  from experiments.configs import inspect_data as inspect_config  # pylint: disable=import-outside-toplevel
  config = inspect_config.get_config()
  config.data = lib.small_config("", {"toy": 1.0})
  config.data.lerobot_dirs = {"toy": toy}
  config.stats_dir = lib.stats_dir()
  report = inspect_data.inspect(config)["toy"]
  source = lerobot.LeRobotSource(toy)
  assert report["episodes"] == source.num_episodes and report["steps"] == source.num_frames
  assert report["action_space"] == "lerobot"
  assert (report["native_action_dim"], report["native_proprio_dim"]) == (source.action_dim,
                                                                         source.proprio_dim)
  tasks = {t.decode() for p in range(source.num_episodes) for t in source.episode(p)["instruction"]}
  assert report["instructions"] and set(report["instructions"]) <= tasks
