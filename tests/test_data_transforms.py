"""Trajectory/frame transforms and normalization statistics."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import data_testlib as lib
from vlajax.data import frame_transforms, mixture, normalization, oxe_registry, rlds
from vlajax.data import traj_transforms


def _traj(length, action_dim=3, proprio_dim=2):
  action = np.arange(length * action_dim, dtype=np.float32).reshape(length, action_dim)
  return {
      "image_primary": tf.constant([f"p{t}".encode() for t in range(length)]),
      "image_wrist": tf.constant([b""] * length),
      "proprio": tf.constant(np.arange(length * proprio_dim, dtype=np.float32).reshape(
          length, proprio_dim)),
      "action": tf.constant(action),
      "instruction": tf.constant([b"go"] * length),
  }


def test_chunk_padding_and_masks_at_episode_end():
  frames = traj_transforms.to_frames(_traj(4), window=2, horizon=3, action_dim=5, proprio_dim=4,
                                     action_mask=(True, True, False))
  action = frames["action"].numpy()
  mask = frames["action_pad_mask"].numpy()
  assert action.shape == (4, 3, 5) and mask.shape == (4, 3, 5)
  raw = np.arange(12, dtype=np.float32).reshape(4, 3)
  # t = 2: steps 2, 3, then the last action repeated (masked).
  np.testing.assert_array_equal(action[2, :, :3], raw[[2, 3, 3]])
  np.testing.assert_array_equal(action[:, :, 3:], 0)               # padded dims are zero
  np.testing.assert_array_equal(mask[2, :, 0], [True, True, False])
  np.testing.assert_array_equal(mask[3, :, 0], [True, False, False])
  np.testing.assert_array_equal(mask[0, :, 0], [True, True, True])
  assert not mask[..., 2:].any()                                     # invalid + padded dims
  # History window: t = 0 repeats step 0 in the padded slot and masks it.
  np.testing.assert_array_equal(frames["timestep_pad_mask"].numpy()[0], [False, True])
  np.testing.assert_array_equal(frames["timestep_pad_mask"].numpy()[1], [True, True])
  np.testing.assert_array_equal(frames["image_primary"].numpy()[0], [b"p0", b"p0"])
  np.testing.assert_array_equal(frames["image_primary"].numpy()[3], [b"p2", b"p3"])
  proprio = frames["proprio"].numpy()
  np.testing.assert_array_equal(proprio[3, 1], [6, 7, 0, 0])
  np.testing.assert_array_equal(frames["proprio_mask"].numpy()[3, 1], [True, True, False, False])


def test_frame_stride_subsamples():
  frames = traj_transforms.to_frames(_traj(7), window=1, horizon=2, action_dim=3, proprio_dim=2,
                                     action_mask=(True,) * 3, frame_stride=3)
  assert frames["action"].shape[0] == 3
  np.testing.assert_array_equal(frames["action"].numpy()[:, 0, 0], [0, 9, 18])


def test_normalize_roundtrip_numpy_jax_tf_and_gripper_untouched():
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
  x[:, 3] = rng.integers(0, 2, 500)
  stats = normalization.compute_stats(x)
  mask = (True, True, True, False)
  for mode in ("normal", "bounds"):
    y = normalization.normalize(x, stats, mode, mask)
    np.testing.assert_array_equal(y[:, 3], x[:, 3])
    if mode == "normal":
      np.testing.assert_allclose(y[:, :3].mean(0), 0, atol=1e-4)
      np.testing.assert_allclose(y[:, :3].std(0), 1, atol=1e-4)
      inside = np.ones(len(x), bool)
    else:
      assert y.min() >= -1 and y.max() <= 1
      inside = ((x[:, :3] >= stats["q01"][:3]) & (x[:, :3] <= stats["q99"][:3])).all(1)
    back = normalization.unnormalize(y, stats, mode, mask)
    np.testing.assert_allclose(back[inside], x[inside], rtol=1e-5, atol=1e-4)
    y_jax = normalization.normalize(jnp.asarray(x), stats, mode, mask)
    y_tf = normalization.normalize(tf.constant(x), stats, mode, mask)
    np.testing.assert_allclose(np.asarray(y_jax), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_tf.numpy(), y, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="unknown normalization mode 'zscore'"):
    normalization.normalize(x, stats, "zscore")


def test_statistics_match_numpy_on_the_same_data_and_are_cached(tmp_path):
  root = lib.oxe_root(("bridge", "kuka"))
  for name in ("bridge", "kuka"):
    source = rlds.RldsSource(rlds.resolve_dataset_dir(root, name), "train")
    actions, proprios = [], []
    for episode in source.episodes():
      traj = oxe_registry.standardize(name, episode)
      actions.append(traj["action"].numpy())
      proprios.append(traj["proprio"].numpy())
    actions, proprios = np.concatenate(actions), np.concatenate(proprios)
    identity = {"name": name, "directory": source.directory, "split": "train"}
    stats = normalization.load_or_compute(str(tmp_path), name, identity,
                                          lambda: mixture.compute_stats(name, source))
    for key, ref in (("mean", actions.mean(0)), ("std", actions.std(0)), ("min", actions.min(0)),
                     ("max", actions.max(0)), ("q01", np.percentile(actions, 1, axis=0)),
                     ("q99", np.percentile(actions, 99, axis=0))):
      np.testing.assert_allclose(stats["action"][key], ref, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(stats["proprio"]["mean"], proprios.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["proprio"]["q99"], np.percentile(proprios, 99, axis=0),
                               rtol=1e-5, atol=1e-6)
    assert stats["num_transitions"] == len(actions)
    assert stats["num_trajectories"] == source.num_episodes
  files = sorted(os.listdir(tmp_path))
  assert len(files) == 2 and all(f.startswith("stats_") for f in files)
  # Cached: a second load reads the file instead of computing.
  hit = normalization.load_or_compute(str(tmp_path), "kuka", identity,
                                      lambda: pytest.fail("recomputed"))
  np.testing.assert_allclose(hit["action"]["mean"], actions.mean(0), rtol=1e-5, atol=1e-6)
  # A different identity (e.g. another split) is a different cache entry.
  calls = []
  normalization.load_or_compute(str(tmp_path), "kuka", identity | {"split": "train[:50%]"},
                                lambda: calls.append(1) or {"action": {}})
  assert calls == [1] and len(os.listdir(tmp_path)) == 3


def _png(value, size=(8, 10)):
  return tf.io.encode_png(np.full((*size, 3), value, np.uint8)).numpy()


def test_decode_resize_and_missing_camera():
  images, present = frame_transforms.decode_resize(tf.constant([_png(200), b""]), (4, 6))
  assert images.shape == (2, 4, 6, 3) and images.dtype == tf.uint8
  np.testing.assert_array_equal(images.numpy()[0], 200)
  np.testing.assert_array_equal(images.numpy()[1], 0)
  np.testing.assert_array_equal(present.numpy(), [True, False])


def test_augmentation_is_seeded_train_only_and_keeps_missing_black():
  rng = np.random.default_rng(0)
  image = tf.io.encode_png(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).numpy()
  frame = {"image_primary": tf.constant([image, image]), "image_wrist": tf.constant([b"", b""]),
           "timestep_pad_mask": tf.constant([True, True])}
  params = frame_transforms.Augment()
  a = frame_transforms.apply(frame, (16, 16), tf.constant([1, 2], tf.int64), params)
  b = frame_transforms.apply(frame, (16, 16), tf.constant([1, 2], tf.int64), params)
  c = frame_transforms.apply(frame, (16, 16), tf.constant([1, 3], tf.int64), params)
  plain = frame_transforms.apply(frame, (16, 16), None, None)
  np.testing.assert_array_equal(a["image_primary"], b["image_primary"])
  assert not np.array_equal(a["image_primary"], c["image_primary"])
  assert not np.array_equal(a["image_primary"], plain["image_primary"])
  # One draw per camera for the whole history window.
  np.testing.assert_array_equal(a["image_primary"][0], a["image_primary"][1])
  np.testing.assert_array_equal(a["image_wrist"], 0)
  np.testing.assert_array_equal(a["image_mask"]["wrist"], [False, False])
  np.testing.assert_array_equal(a["image_mask"]["primary"], [True, True])


def test_goal_indices_last_and_uniform():
  last = traj_transforms.goal_indices(tf.constant(5), "last").numpy()
  np.testing.assert_array_equal(last, [4] * 5)
  seed = tf.constant([3, 4], tf.int64)
  uniform = traj_transforms.goal_indices(tf.constant(50), "uniform", seed).numpy()
  assert (uniform >= np.arange(50)).all() and (uniform <= 49).all()
  assert len(set(uniform.tolist())) > 10
  np.testing.assert_array_equal(uniform, traj_transforms.goal_indices(tf.constant(50), "uniform",
                                                                      seed).numpy())
  frames = traj_transforms.to_frames(_traj(4), window=1, horizon=2, action_dim=3, proprio_dim=2,
                                     action_mask=(True,) * 3, goal_relabel="last")
  np.testing.assert_array_equal(frames["image_goal"].numpy()[:, 0], [b"p3"] * 4)
  with pytest.raises(ValueError, match="unknown goal_relabel 'first'"):
    traj_transforms.goal_indices(tf.constant(3), "first")
