"""Standardization of real OXE-layout RLDS files: known on-disk values -> expected common values."""
import os
import zlib

import numpy as np
import pytest
import tensorflow as tf

import data_testlib as lib
from vlajax.data import oxe_registry, oxe_specs, rlds, writer

T = 5


def _write_one(tmp_path, name, edit, image_format="png"):
  """Writes one episode of dataset `name` (OXE layout) after `edit(steps)`; returns it standardized."""
  rng = np.random.default_rng(1)
  episode = lib.tagged_episode(name, 0, T, rng)
  edit(episode["steps"])
  directory = writer.write_rlds(str(tmp_path), name, {"train": [episode]},
                                features=oxe_specs.tfds_features(name, lib.IMAGE, image_format))
  source = rlds.RldsSource(directory, "train")
  parsed = next(iter(source.episodes()))
  out = {k: v.numpy() for k, v in oxe_registry.standardize(name, parsed).items()}
  return episode, out, source


def _decode(png_bytes):
  return tf.io.decode_png(png_bytes).numpy()


def test_registry_covers_required_oxe_datasets():
  required = {"fractal20220817_data", "bridge", "taco_play", "kuka", "jaco_play",
              "berkeley_autolab_ur5", "language_table", "toto",
              "stanford_hydra_dataset_converted_externally_to_rlds",
              "austin_buds_dataset_converted_externally_to_rlds"}
  assert required <= set(oxe_registry.names())
  assert required <= set(oxe_specs.OXE_SPECS)


def test_fractal_relative_gripper_and_pose(tmp_path):
  world = np.arange(T * 3, dtype=np.float32).reshape(T, 3) / 10
  rot = -np.arange(T * 3, dtype=np.float32).reshape(T, 3) / 100

  def edit(steps):
    steps["action"]["world_vector"] = world
    steps["action"]["rotation_delta"] = rot
    # +1 close at t=1, -1 open at t=3: absolute (1 = open) is open before the first close.
    steps["action"]["gripper_closedness_action"] = np.array([[0], [1], [0], [-1], [0]], np.float32)
    steps["observation"]["base_pose_tool_reached"] = np.tile(np.arange(7, dtype=np.float32), (T, 1))
    steps["observation"]["gripper_closed"] = np.array([[0], [1], [1], [0], [0]], np.float32)

  episode, out, source = _write_one(tmp_path, "fractal20220817_data", edit)
  np.testing.assert_allclose(out["action"][:, :3], world)
  np.testing.assert_allclose(out["action"][:, 3:6], rot)
  np.testing.assert_array_equal(out["action"][:, 6], [1, 0, 0, 1, 1])
  np.testing.assert_allclose(out["proprio"], np.concatenate(
      [np.tile(np.arange(7), (T, 1)), [[0], [1], [1], [0], [0]]], 1))
  assert out["instruction"][2] == b"fractal20220817_data ep0 t2"
  np.testing.assert_array_equal(_decode(out["image_primary"][3]),
                                episode["steps"]["observation"]["image"][3])
  assert (out["image_wrist"] == b"").all()
  assert "terminate_episode" in source.features["steps"]["action"]


def test_relative_gripper_edge_cases():
  f = lambda x: oxe_registry.relative_to_absolute_gripper(np.asarray(x, np.float32)).numpy()
  np.testing.assert_array_equal(f([0, 0, -1, 0]), [0, 0, 1, 1])   # first command opens: closed before
  np.testing.assert_array_equal(f([0, 0, 0]), [1, 1, 1])          # no command: open
  np.testing.assert_array_equal(f([1, 0.05, -1, 1]), [0, 0, 1, 0])


def test_kuka_zlib_proprio_and_blank_instruction(tmp_path):
  pose = np.random.default_rng(2).standard_normal((T, 7)).astype(np.float32)

  def edit(steps):
    steps["observation"]["clip_function_input/base_pose_tool_reached"] = pose
    steps["observation"]["gripper_closed"] = np.ones((T, 1), np.float32)
    steps["action"]["gripper_closedness_action"] = np.array([[-1], [0], [0], [1], [0]], np.float32)

  _, out, source = _write_one(tmp_path, "kuka", edit)
  # On disk the state really is zlib-compressed float32 bytes (read without tfds decoding).
  raw = next(iter(tf.data.TFRecordDataset(source.files)))
  example = tf.train.Example.FromString(raw.numpy())
  blob = example.features.feature[
      "steps/observation/clip_function_input/base_pose_tool_reached"].bytes_list.value[0]
  np.testing.assert_array_equal(np.frombuffer(zlib.decompress(blob), np.float32), pose[0])
  np.testing.assert_allclose(out["proprio"], np.concatenate([pose, np.ones((T, 1))], 1))
  np.testing.assert_array_equal(out["action"][:, 6], [1, 1, 1, 0, 0])
  assert (out["instruction"] == b"").all()


def test_bridge_open_gripper_no_discount(tmp_path):
  def edit(steps):
    steps["action"]["open_gripper"] = np.array([1, 1, 0, 0, 1], bool)
    steps["action"]["world_vector"] = np.full((T, 3), 0.5, np.float32)
    steps["observation"]["state"] = np.tile(np.arange(7, dtype=np.float32), (T, 1))

  _, out, source = _write_one(tmp_path, "bridge", edit)
  assert "discount" not in source.features["steps"]
  np.testing.assert_array_equal(out["action"][:, 6], [1, 1, 0, 0, 1])
  np.testing.assert_allclose(out["action"][:, :3], 0.5)
  np.testing.assert_allclose(out["proprio"][0], np.arange(7))


def test_taco_play_gripper_clip_and_cameras(tmp_path):
  rel = np.zeros((T, 7), np.float32)
  rel[:, :6] = 0.25
  rel[:, 6] = [-1, -1, 1, 1, -1]

  def edit(steps):
    steps["action"]["rel_actions_world"] = rel
    steps["observation"]["robot_obs"] = np.tile(np.arange(15, dtype=np.float32), (T, 1))

  episode, out, _ = _write_one(tmp_path, "taco_play", edit)
  np.testing.assert_array_equal(out["action"][:, 6], [0, 0, 1, 1, 0])
  np.testing.assert_allclose(out["action"][:, :6], 0.25)
  np.testing.assert_allclose(out["proprio"][0], np.arange(7))
  np.testing.assert_array_equal(_decode(out["image_wrist"][1]),
                                episode["steps"]["observation"]["rgb_gripper"][1])
  np.testing.assert_array_equal(_decode(out["image_primary"][1]),
                                episode["steps"]["observation"]["rgb_static"][1])


def test_language_table_codepoints_and_2d_action(tmp_path):
  text = "push the red star to the blue cube"

  def edit(steps):
    codes = np.zeros((T, 512), np.int32)
    codes[:, :len(text)] = [ord(c) for c in text]
    steps["observation"]["instruction"] = codes
    steps["action"] = np.tile(np.array([0.03, -0.02], np.float32), (T, 1))

  _, out, _ = _write_one(tmp_path, "language_table", edit)
  assert all(i == text.encode() for i in out["instruction"])
  np.testing.assert_allclose(out["action"][0], [0.03, -0.02, 0, 0, 0, 0, 0])
  assert oxe_registry.spec("language_table").action_mask == (True, True) + (False,) * 5
  assert out["proprio"].shape == (T, 2)


def test_converted_externally_gripper_conventions(tmp_path):
  hydra = "stanford_hydra_dataset_converted_externally_to_rlds"
  buds = "austin_buds_dataset_converted_externally_to_rlds"
  action = np.zeros((T, 7), np.float32)
  action[:, 6] = [1, 1, 0, 0, 1]          # hydra: 1 = close

  def edit_hydra(steps):
    steps["action"] = action
    steps["observation"]["state"] = np.tile(np.arange(27, dtype=np.float32), (T, 1))

  _, out, _ = _write_one(tmp_path / "h", hydra, edit_hydra)
  np.testing.assert_array_equal(out["action"][:, 6], [0, 0, 1, 1, 0])
  np.testing.assert_allclose(out["proprio"][0], [0, 1, 2, 7, 8, 9, 24])

  buds_action = np.zeros((T, 7), np.float32)
  buds_action[:, 6] = [-1, 1, 1, -1, -1]  # buds: +1 close / -1 open

  def edit_buds(steps):
    steps["action"] = buds_action
    steps["observation"]["state"] = np.tile(np.arange(24, dtype=np.float32), (T, 1))

  _, out, _ = _write_one(tmp_path / "b", buds, edit_buds)
  np.testing.assert_array_equal(out["action"][:, 6], [1, 0, 0, 1, 1])
  np.testing.assert_allclose(out["proprio"][0], np.arange(8))
  assert (out["instruction"] == b"").all()


def test_jaco_ur5_toto(tmp_path):
  def edit_jaco(steps):
    steps["action"]["world_vector"] = np.full((T, 3), 0.1, np.float32)
    steps["action"]["gripper_closedness_action"] = np.array([[0], [1], [0], [0], [-1]], np.float32)

  _, out, _ = _write_one(tmp_path / "j", "jaco_play", edit_jaco)
  np.testing.assert_allclose(out["action"][:, :6], [[0.1] * 3 + [0] * 3] * T)
  np.testing.assert_array_equal(out["action"][:, 6], [1, 0, 0, 0, 1])
  assert oxe_registry.spec("jaco_play").action_mask[3:6] == (False,) * 3

  def edit_ur5(steps):
    steps["observation"]["robot_state"] = np.tile(np.arange(15, dtype=np.float32), (T, 1))
    steps["action"]["gripper_closedness_action"] = np.array([1, 0, 0, -1, 0], np.float32)

  _, out, _ = _write_one(tmp_path / "u", "berkeley_autolab_ur5", edit_ur5)
  np.testing.assert_allclose(out["proprio"][0], np.arange(6, 14))
  np.testing.assert_array_equal(out["action"][:, 6], [0, 0, 0, 1, 1])

  def edit_toto(steps):
    steps["action"]["open_gripper"] = np.array([0, 1, 1, 0, 0], bool)

  _, out, _ = _write_one(tmp_path / "t", "toto", edit_toto)
  np.testing.assert_array_equal(out["action"][:, 6], [0, 1, 1, 0, 0])
  assert (out["instruction"] == b"").all()


def test_unknown_dataset_and_missing_feature_are_named(tmp_path):
  with pytest.raises(KeyError, match="unknown dataset 'not_a_dataset'"):
    oxe_registry.spec("not_a_dataset")
  steps = {"is_first": tf.constant([True]), "observation": {"image": tf.constant([b""])},
           "action": {"world_vector": tf.zeros([1, 3])}}
  with pytest.raises(KeyError, match="steps/observation/state"):
    oxe_registry.standardize("bridge", {"steps": steps})
  # A real directory of another layout read as bridge: the missing action key is named.
  eps = [oxe_specs.random_episode("toto", 3, np.random.default_rng(0), lib.IMAGE)]
  eps[0]["steps"]["observation"].pop("state")
  spec = {k: v for k, v in oxe_specs.spec("toto").items()}
  spec["steps"] = dict(spec["steps"], observation={
      k: v for k, v in spec["steps"]["observation"].items() if k != "state"})
  directory = writer.write_rlds(str(tmp_path), "toto", {"train": eps},
                                features=oxe_specs.tfds_features(spec, lib.IMAGE, "png"))
  parsed = next(iter(rlds.RldsSource(directory).episodes()))
  with pytest.raises(KeyError, match="dataset 'toto': missing feature 'steps/observation/state'"):
    oxe_registry.standardize("toto", parsed)
  with pytest.raises(KeyError, match="unknown split 'validation'"):
    rlds.RldsSource(directory, "validation")
  with pytest.raises(FileNotFoundError, match="nope"):
    rlds.resolve_dataset_dir(str(tmp_path), "nope")
  assert os.path.isdir(directory)
