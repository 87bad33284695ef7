"""RLDS writer round trip (our env episodes -> tfds files -> our reader) and inspect_data."""
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_testlib as lib
from vlajax.data import loader as loader_lib
from vlajax.data import oxe_registry, rlds, writer


def _env_episode(k, length, rng):
  """What one of our environments records: numpy observation dict, actions, rewards, text."""
  return {
      "observation": {"image": rng.integers(0, 256, (length, 12, 16, 3), dtype=np.uint8),
                      "state": rng.standard_normal((length, 4))},         # float64 on purpose
      "action": np.concatenate([np.full((length, 6), k, np.float32),
                                (np.arange(length) % 2)[:, None].astype(np.float32)], 1),
      "reward": np.arange(length, dtype=np.float32),
      "language_instruction": f"sim task {k}",
  }


def test_env_episodes_round_trip_through_tfds_and_our_reader(tmp_path):
  rng = np.random.default_rng(0)
  train = [_env_episode(k, 3 + k, rng) for k in range(4)]
  val = [_env_episode(9, 5, rng)]
  directory = writer.write_rlds(str(tmp_path), "sim_pick", {"train": train, "val": val},
                                num_shards=2)
  builder = tfds.builder_from_directory(directory)      # a plain tfds dataset
  assert builder.info.splits["train"].num_examples == 4
  assert builder.info.splits["val"].num_examples == 1
  steps_features = builder.info.features["steps"]
  assert set(steps_features.keys()) >= {"observation", "action", "reward", "discount", "is_first",
                                        "is_last", "is_terminal", "language_instruction"}
  # tfds's own reader: values are exact (PNG images, float32 state).
  by_text = {}
  for episode in tfds.as_numpy(builder.as_dataset(split="train")):
    steps = list(episode["steps"])
    k = int(steps[0]["language_instruction"].decode().split()[-1])
    by_text[k] = steps
  for k, ep in enumerate(train):
    steps = by_text[k]
    assert len(steps) == 3 + k
    np.testing.assert_array_equal(np.stack([s["observation"]["image"] for s in steps]),
                                  ep["observation"]["image"])
    np.testing.assert_allclose(np.stack([s["observation"]["state"] for s in steps]),
                               ep["observation"]["state"].astype(np.float32))
    np.testing.assert_array_equal([s["is_first"] for s in steps], np.arange(3 + k) == 0)
    np.testing.assert_array_equal([s["is_last"] for s in steps], np.arange(3 + k) == 2 + k)
  # Our reader + a generic registry entry: the same data as training batches.
  oxe_registry.register_generic("sim_pick", primary_image="image", state_key="state",
                                state_dim=4, action_dim=7)
  cfg = lib.small_config(str(tmp_path), {"sim_pick": 1.0}, normalization="none", augment=False,
                         image_size=(12, 16), global_batch_size=4, horizon=2)
  loader = loader_lib.DataLoader(cfg, stats_dir=str(tmp_path / "stats"))
  batch = loader.next_local()
  for row, text in enumerate(batch["instruction"]):
    k = int(text.decode().split()[-1])
    action = batch["action"][row, 0, :7]
    assert (action[:6] == k).all() and action[6] in (0.0, 1.0)
    image = batch["observation"]["image_primary"][row, 0]
    matches = [t for t in range(3 + k) if np.array_equal(image, train[k]["observation"]["image"][t])]
    assert matches, "decoded image equals one of the written frames"
    np.testing.assert_allclose(batch["observation"]["proprio"][row, 0, :4],
                               train[k]["observation"]["state"][matches[0]].astype(np.float32),
                               rtol=1e-6)
  val_loader = loader_lib.DataLoader(cfg, train=False, split="val",
                                     stats_dir=str(tmp_path / "stats"))
  assert set(val_loader.next_local()["instruction"]) == {b"sim task 9"}


def test_writer_rejects_inconsistent_episodes(tmp_path):
  bad = {"observation": {"state": np.zeros((3, 2))}, "action": np.zeros((4, 2))}
  with pytest.raises(ValueError, match="'observation/state' has 3 steps, action has 4"):
    writer.write_rlds(str(tmp_path), "bad", {"train": [bad]})
  with pytest.raises(KeyError, match="needs 'observation' and 'action'"):
    writer.write_rlds(str(tmp_path), "bad", {"train": [{"action": np.zeros((2, 1))}]})


def test_inspect_data_reports_each_dataset(capsys):
  from experiments import inspect_data  # pylint: disable=g-import-not-at-top
  from experiments.configs import inspect_data as inspect_config  # pylint: disable=g-import-not-at-top
  names = ("fractal20220817_data", "kuka", "language_table")
  root = lib.oxe_root(names)
  config = inspect_config.get_config()
  small = lib.small_config(root, {n: 1.0 for n in names})
  config.data = small
  config.stats_dir = lib.stats_dir()
  report = inspect_data.inspect(config)
  json.dumps(report)                                     # JSON-serializable
  assert set(report) == set(names)
  source = rlds.RldsSource(rlds.resolve_dataset_dir(root, "kuka"))
  assert report["kuka"]["episodes"] == source.num_episodes == 8
  assert report["kuka"]["steps"] == sum(
      int(e["steps"]["is_first"].shape[0]) for e in source.episodes())
  features = report["language_table"]["features"]
  assert features["action"]["shape"] == [8, 3, 8]
  assert features["observation"]["image_primary"]["shape"] == [8, 1, 16, 16, 3]
  assert report["language_table"]["instructions"][0].startswith("language_table ep")
  assert report["kuka"]["instructions"] == [""]            # uninformative, blanked
  assert len(report["fractal20220817_data"]["statistics"]["action"]["q99"]) == 7
  assert report["language_table"]["native_proprio_dim"] == 2
  del capsys
