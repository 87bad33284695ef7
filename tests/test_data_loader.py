"""The full pipeline on real RLDS directories: mixture, determinism, host shards, resume, sharding."""
import collections
import json

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import data_testlib as lib
from vlajax.core import mesh as mesh_lib
from vlajax.data import loader as loader_lib
from vlajax.data import oxe_registry, writer

FOUR = ("fractal20220817_data", "bridge", "taco_play", "language_table")


def _loader(root, weights, state=None, **kw):
  overrides = {k: v for k, v in kw.items() if k not in ("process_index", "process_count", "train")}
  cfg = lib.small_config(root, weights, **overrides)
  return loader_lib.DataLoader(cfg, stats_dir=lib.stats_dir(), state=state,
                               process_index=kw.get("process_index"),
                               process_count=kw.get("process_count"),
                               train=kw.get("train", True))


def _equal_batches(a, b):
  flat_a, tree_a = jax.tree_util.tree_flatten(a)
  flat_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(flat_a, flat_b))


@pytest.fixture(scope="module")
def root4():
  return lib.oxe_root(FOUR)


def test_batches_are_sharded_jax_arrays_in_the_documented_format(root4):
  loader = _loader(root4, {n: 1.0 for n in FOUR})
  batch = next(loader)
  b, h, a, p = 8, 3, 8, 8
  obs = batch["observation"]
  assert obs["image_primary"].shape == (b, 1, 16, 16, 3) and obs["image_primary"].dtype == np.uint8
  assert obs["image_wrist"].shape == (b, 1, 16, 16, 3)
  assert obs["proprio"].shape == (b, 1, p) and obs["proprio_mask"].shape == (b, 1, p)
  assert obs["image_mask"]["primary"].shape == (b, 1)
  assert batch["action"].shape == (b, h, a) and batch["action_pad_mask"].shape == (b, h, a)
  for leaf in (obs["image_primary"], batch["action"], batch["dataset_id"]):
    assert isinstance(leaf, jax.Array)
    assert isinstance(leaf.sharding, NamedSharding)
    assert leaf.sharding.spec == PartitionSpec("data") and leaf.sharding.mesh.shape["data"] == 4
    assert len(leaf.addressable_shards) == 4
    assert all(s.data.shape[0] == b // 4 for s in leaf.addressable_shards)
  assert batch["instruction"].shape == (b,) and isinstance(batch["instruction"][0], bytes)
  ids = np.asarray(batch["dataset_id"])
  names = [loader.dataset_names[i].encode() for i in ids]
  assert list(batch["dataset_name"]) == names
  # Instructions name their origin; masks follow each dataset's cameras and dims.
  for row, instruction in enumerate(batch["instruction"]):
    name = lib.origin(instruction)[0]
    assert name.encode() == batch["dataset_name"][row]
    spec = oxe_registry.spec(name)
    assert bool(obs["image_mask"]["wrist"][row, 0]) == (spec.wrist_image is not None)
    assert int(np.asarray(obs["proprio_mask"][row, 0]).sum()) == spec.proprio_dim()
    np.testing.assert_array_equal(np.asarray(batch["action_pad_mask"][row, 0])[:7],
                                  spec.action_mask)


def test_known_action_reaches_the_batch_unnormalized(root4):
  """A frame's action, un-normalized, equals the standardized on-disk action of its step."""
  loader = _loader(root4, {"taco_play": 1.0}, normalization="bounds")
  batch = loader.next_local()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vlajax.data import rlds  # pylint: disable=g-import-not-at-top
  source = rlds.RldsSource(rlds.resolve_dataset_dir(root4, "taco_play"))
  by_text = {}
  for episode in source.episodes():
    traj = oxe_registry.standardize("taco_play", episode)
    for t, text in enumerate(traj["instruction"].numpy()):
      by_text[text] = traj["action"].numpy()[t]
  for row, text in enumerate(batch["instruction"]):
    expected = by_text[text]
    got = loader.unnormalize_action(batch["action"][row, 0], "taco_play")
    inside = (expected >= loader.stats["taco_play"]["action"]["q01"]) & (
        expected <= loader.stats["taco_play"]["action"]["q99"])
    np.testing.assert_allclose(np.asarray(got)[inside], expected[inside], rtol=1e-4, atol=1e-4)
    assert np.asarray(got)[6] == expected[6]          # the gripper is never normalized
  del tf


def test_mixture_proportions_follow_weights(root4):
  weights = {"fractal20220817_data": 4.0, "bridge": 2.0, "taco_play": 1.0, "language_table": 1.0}
  loader = _loader(root4, weights, global_batch_size=64, image_size=(4, 4), augment=False)
  counts = collections.Counter()
  n = 0
  for _ in range(20):
    batch = loader.next_local()
    counts.update(loader.dataset_names[i] for i in batch["dataset_id"])
    n += len(batch["dataset_id"])
  total = sum(weights.values())
  for name, w in weights.items():
    p = w / total
    tolerance = 4 * np.sqrt(p * (1 - p) / n)
    assert abs(counts[name] / n - p) < tolerance, (name, counts[name] / n, p)


def test_same_seed_same_batches_other_seed_differs(root4):
  weights = {"fractal20220817_data": 1.0, "taco_play": 1.0}
  a = _loader(root4, weights)
  b = _loader(root4, weights)
  c = _loader(root4, weights, seed=1)
  batches_a = [a.next_local() for _ in range(3)]
  batches_b = [b.next_local() for _ in range(3)]
  batches_c = [c.next_local() for _ in range(3)]
  assert all(_equal_batches(x, y) for x, y in zip(batches_a, batches_b))
  assert not _equal_batches(batches_a[0], batches_c[0])


def test_host_shards_are_disjoint_and_cover_every_frame():
  root = lib.oxe_root(("bridge",), episodes=12, num_shards=3)
  total_frames = 0
  from vlajax.data import rlds  # pylint: disable=g-import-not-at-top
  source = rlds.RldsSource(rlds.resolve_dataset_dir(root, "bridge"))
  all_frames = set()
  for episode in source.episodes():
    traj = oxe_registry.standardize("bridge", episode)
    all_frames.update(lib.origin(t) for t in traj["instruction"].numpy())
  total_frames = len(all_frames)
  seen = []
  for host in range(2):
    loader = _loader(root, {"bridge": 1.0}, global_batch_size=2, process_index=host,
                     process_count=2, image_size=(4, 4), augment=False)
    windows = loader.streams[0].windows
    host_frames = []
    # One epoch of this host = the frames of its windows; read exactly that many.
    host_count = sum(
        1 for f in all_frames if _host_of(f, source, windows))
    for _ in range(host_count):
      host_frames.extend(lib.origin(t) for t in loader.next_local()["instruction"])
    assert len(host_frames) == len(set(host_frames)) == host_count   # each frame once per epoch
    seen.append(set(host_frames))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == all_frames and total_frames == len(all_frames)
  assert seen[0] and seen[1]


def _host_of(frame, source, windows):
  """Whether `frame` (name, episode, t) lies in one of `windows` (decided by reading them)."""
  cache = _host_of.cache.get(windows.tobytes())
  if cache is None:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    episodes = set()
    for serialized in source.read_windows(tf.constant(windows)):
      traj = oxe_registry.standardize("bridge", source.parse_episode(serialized))
      episodes.add(lib.origin(traj["instruction"].numpy()[0])[1])
    cache = _host_of.cache[windows.tobytes()] = episodes
  return frame[1] in cache


_host_of.cache = {}


def test_resume_continues_exactly_across_blocks_and_epochs(root4, tmp_path):
  weights = {"fractal20220817_data": 1.0, "bridge": 1.0}
  reference = _loader(root4, weights, global_batch_size=4, image_size=(8, 8))
  # 2 datasets x 8 episodes x ~5 steps, 2 blocks per epoch: 25 batches of 4 reach epoch 2.
  for _ in range(25):
    reference.next_local()
  saved = reference.state()
  assert json.loads(json.dumps(saved)) == saved                      # serializable ints
  assert all(s["block"] >= 2 for s in saved["streams"].values())   # past the first epoch
  expected = [reference.next_local() for _ in range(8)]
  resumed = _loader(root4, weights, global_batch_size=4, image_size=(8, 8), state=saved)
  got = [resumed.next_local() for _ in range(8)]
  assert all(_equal_batches(x, y) for x, y in zip(expected, got))
  assert resumed.state() == reference.state()
  # Through a real orbax checkpoint's metadata, as a training run stores it.
  from vlajax.core.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  ckpt = Checkpointer(tmp_path / "ckpt")
  ckpt.save(25, {"w": np.zeros(2, np.float32)}, metadata={"data": saved})
  restored = Checkpointer(tmp_path / "ckpt").metadata()["data"]
  again = _loader(root4, weights, global_batch_size=4, image_size=(8, 8), state=restored)
  assert _equal_batches(again.next_local(), expected[0])
  with pytest.raises(ValueError, match="seed"):
    _loader(root4, weights, global_batch_size=4, seed=5, state=saved)
  with pytest.raises(KeyError, match="example_index"):
    _loader(root4, weights, global_batch_size=4, state={"version": 1, "seed": 0, "streams": {}})


def test_vision_language_cotraining_ratio(tmp_path, root4):
  rng = np.random.default_rng(0)
  examples = [{"image": rng.integers(0, 256, (12, 12, 3), dtype=np.uint8),
               "prompt": f"what is {k}?".encode(), "answer": f"thing {k}".encode()}
              for k in range(10)]
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(12, 12, 3)),
                                         "prompt": tfds.features.Text(),
                                         "answer": tfds.features.Text()})
  vl_dir = writer.write_rlds(str(tmp_path), "toy_vqa", {"train": examples}, features=features)
  loader = _loader(root4, {"bridge": 1.0, "taco_play": 1.0}, vl_data_dir=vl_dir, vl_ratio=0.25,
                   global_batch_size=64, image_size=(4, 4), augment=False)
  vl, n = 0, 0
  for _ in range(10):
    batch = loader.next_local()
    robot = batch["is_robot"]
    vl += int((~robot).sum())
    n += len(robot)
    for row in np.flatnonzero(~robot):
      assert batch["answer"][row].startswith(b"thing ")
      assert batch["instruction"][row].startswith(b"what is ")
      assert not batch["action_pad_mask"][row].any() and not batch["observation"]["proprio_mask"][row].any()
      assert batch["observation"]["image_mask"]["primary"][row, -1]
  assert abs(vl / n - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)


def test_unknown_dataset_in_config_is_named(root4):
  with pytest.raises(KeyError, match="unknown dataset 'bridge_v9'"):
    _loader(root4, {"bridge_v9": 1.0})
  with pytest.raises(ValueError, match="language_table.*action dims|action dims"):
    _loader(root4, {"taco_play": 1.0}, action_dim=4)


def test_global_batch_over_a_data_fsdp_mesh(root4):
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2})
  cfg = lib.small_config(root4, {"bridge": 1.0})
  loader = loader_lib.DataLoader(cfg, mesh, stats_dir=lib.stats_dir(), batch_axes=("data", "fsdp"))
  batch = next(loader)
  assert batch["action"].sharding.spec == PartitionSpec(("data", "fsdp"))
  assert {s.data.shape[0] for s in batch["action"].addressable_shards} == {2}


def test_goal_relabel_last_gives_the_final_frame_of_the_episode(root4):
  from vlajax.data import rlds  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  loader = _loader(root4, {"bridge": 1.0}, goal_relabel="last", image_size=lib.IMAGE,
                   augment=False)
  batch = loader.next_local()
  source = rlds.RldsSource(rlds.resolve_dataset_dir(root4, "bridge"))
  last_image = {}
  for episode in source.episodes():
    traj = oxe_registry.standardize("bridge", episode)
    k = lib.origin(traj["instruction"].numpy()[0])[1]
    last_image[k] = tf.io.decode_png(traj["image_primary"][-1]).numpy()
  assert batch["observation"]["image_goal"].shape == (8, 1, *lib.IMAGE, 3)
  assert batch["observation"]["image_mask"]["goal"].all()
  for row, text in enumerate(batch["instruction"]):
    np.testing.assert_array_equal(batch["observation"]["image_goal"][row, 0],
                                  last_image[lib.origin(text)[1]])
