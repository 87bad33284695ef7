"""Corrupt RLDS data, written by the tests and then damaged on disk: a truncated shard, a shard
with a flipped byte (record CRC), undecodable features and images. With on_corrupt="raise" each
error names dataset, split, shard, record and feature; with "skip" an epoch finishes without the
damaged records and the loader reports exactly how many it skipped. Also: zlib-compressed state
stored as bytes decodes like tfds' `Encoding.ZLIB` tensors."""
import logging
import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import data_testlib as lib
from vlajax.data import corruption, loader as loader_lib, mixture, oxe_registry, oxe_specs, rlds
from vlajax.data import writer

NAME = "bridge"
EPISODES, SHARDS = 8, 2        # 4 records per shard
STATE_KEY = "steps/observation/state"
IMAGE_KEY = "steps/observation/image"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
  """A bridge dataset (OXE layout, 2 shards of 4 episodes, tagged instructions), never modified."""
  root = str(tmp_path_factory.mktemp("pristine"))
  rng = np.random.default_rng(0)
  episodes = [lib.tagged_episode(NAME, k, int(rng.integers(3, 6)), rng) for k in range(EPISODES)]
  writer.write_rlds(root, NAME, {"train": episodes},
                    features=oxe_specs.tfds_features(NAME, lib.IMAGE, image_format="png"),
                    num_shards=SHARDS)
  return root


def _copy(pristine, tmp_path):
  """A private copy of the pristine root and its RldsSource (files in shard order)."""
  root = str(tmp_path / "data")
  shutil.copytree(pristine, root)
  return root, rlds.RldsSource(rlds.resolve_dataset_dir(root, NAME))


def _records(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def _offsets(path):
  """Byte offset of each record (TFRecord framing: u64 length, u32 crc, data, u32 crc)."""
  data, offsets, at = open(path, "rb").read(), [], 0
  while at < len(data):
    offsets.append(at)
    at += 16 + struct.unpack("<Q", data[at:at + 8])[0]
  return offsets


def _truncate(path, record):
  """Cuts the file 20 bytes into `record` (records before it stay whole)."""
  with open(path, "r+b") as f:
    f.truncate(_offsets(path)[record] + 20)


def _flip_byte(path, record):
  """Flips one byte of `record`'s data: its length is intact, its CRC fails."""
  data = bytearray(open(path, "rb").read())
  data[_offsets(path)[record] + 12 + 30] ^= 0xFF
  open(path, "wb").write(bytes(data))


def _edit_record(path, record, edit):
  """Rewrites shard `path` with `edit(tf.train.Example)` applied to `record` (valid framing)."""
  records = _records(path)
  example = tf.train.Example.FromString(records[record])
  edit(example.features.feature)
  records[record] = example.SerializeToString()
  with tf.io.TFRecordWriter(path) as w:
    for r in records:
      w.write(r)


def _state_as_bytes(features):      # a float feature stored as bytes: does not parse
  features[STATE_KEY].ClearField("float_list")
  features[STATE_KEY].bytes_list.value[:] = [b"not a float"]


def _images_garbage(features):      # every step's image is not an image
  n = len(features[IMAGE_KEY].bytes_list.value)
  features[IMAGE_KEY].bytes_list.value[:] = [b"\x89PNG garbage"] * n


def _episode_at(source):
  """{(shard, record): episode number} from the tagged instructions."""
  out = {}
  for shard, path in enumerate(source.files):
    for record, serialized in enumerate(_records(path)):
      text = source.parse_episode(serialized)["steps"]["observation"][
          "natural_language_instruction"][0].numpy()
      out[(shard, record)] = lib.origin(text)[1]
  return out


def _loader(root, tmp_path, **overrides):
  cfg = lib.small_config(root, {NAME: 1.0}, augment=False, **overrides)
  return loader_lib.DataLoader(cfg, stats_dir=str(tmp_path / "stats"), process_index=0,
                               process_count=1)


def _assert_names(error, source, shard, record, feature=None):
  message = str(error.value)
  assert f"dataset '{NAME}'" in message and "split 'train'" in message
  assert f"shard '{source.files[shard]}'" in message and f"record {record}" in message
  assert (error.value.dataset, error.value.split) == (NAME, "train")
  assert (error.value.file, error.value.record) == (source.files[shard], record)
  if feature is not None:
    assert f"feature '{feature}" in message and error.value.feature.startswith(feature)


def test_truncated_shard_names_dataset_split_shard_and_record(pristine, tmp_path):
  root, source = _copy(pristine, tmp_path)
  _truncate(source.files[1], 2)
  with pytest.raises(corruption.CorruptDataError, match="truncated record") as error:
    _loader(root, tmp_path)                          # fails in the statistics pass
  _assert_names(error, source, 1, 2)
  assert "records 2-3 of this shard were lost" in str(error.value)
  # Statistics given (e.g. cached): the error comes from the training reads, named the same.
  stats = {NAME: mixture.compute_stats(NAME, _copy(pristine, tmp_path / "clean")[1])}
  cfg = lib.small_config(root, {NAME: 1.0}, augment=False)
  loader = loader_lib.DataLoader(cfg, stats=stats, process_index=0, process_count=1)
  with pytest.raises(corruption.CorruptDataError, match="truncated record") as error:
    for _ in range(20):
      loader.next_local()
  _assert_names(error, source, 1, 2)


def test_crc_corrupted_shard_names_the_record(pristine, tmp_path):
  root, source = _copy(pristine, tmp_path)
  _flip_byte(source.files[0], 1)
  with pytest.raises(corruption.CorruptDataError, match="corrupted record") as error:
    mixture.compute_stats(NAME, source, 2, corruption.RecordGuard(source, "raise"))
  _assert_names(error, source, 0, 1)
  # Without the guard the reader's own error is all there is (what the issue reported).
  with pytest.raises(tf.errors.DataLossError) as raw:
    mixture.compute_stats(NAME, source, 2)
  assert source.files[0] not in str(raw.value)


def test_undecodable_features_are_named(pristine, tmp_path):
  root, source = _copy(pristine, tmp_path)
  _edit_record(source.files[1], 3, _state_as_bytes)
  with pytest.raises(corruption.CorruptDataError, match="cannot be decoded") as error:
    _loader(root, tmp_path)
  _assert_names(error, source, 1, 3, STATE_KEY)
  # An image that does not decode fails after mixing; the loader replays to find its record.
  root, source = _copy(pristine, tmp_path / "image")
  _edit_record(source.files[0], 2, _images_garbage)
  loader = _loader(root, tmp_path / "image")
  with pytest.raises(corruption.CorruptDataError, match="cannot be decoded") as error:
    for _ in range(20):
      loader.next_local()
  _assert_names(error, source, 0, 2, IMAGE_KEY)
  assert "(image_primary)" in str(error.value)


def test_skip_finishes_the_epoch_and_counts_exactly(pristine, tmp_path, caplog):
  root, source = _copy(pristine, tmp_path)
  episode_at = _episode_at(source)
  lengths = {}
  for shard, path in enumerate(source.files):
    for record, serialized in enumerate(_records(path)):
      lengths[episode_at[(shard, record)]] = int(
          source.parse_episode(serialized)["steps"]["is_first"].shape[0])
  _edit_record(source.files[0], 3, _state_as_bytes)     # shard 0: record 3 does not decode
  _flip_byte(source.files[0], 1)                        # shard 0: record 1 fails its CRC
  _edit_record(source.files[1], 0, _images_garbage)     # shard 1: record 0's images
  _truncate(source.files[1], 2)                         # shard 1: records 2, 3 cut off
  bad = {(0, 1), (0, 3), (1, 0), (1, 2), (1, 3)}
  kept = {episode_at[k] for k in episode_at if k not in bad}
  with caplog.at_level(logging.WARNING):
    loader = _loader(root, tmp_path, on_corrupt="skip")
    frames = sum(lengths[e] for e in kept)
    seen = []
    while len(seen) < frames:                           # one epoch of the surviving frames
      seen += [lib.origin(t)[1:] for t in loader.next_local()["instruction"]]
  seen = seen[:frames]
  assert sorted(seen) == sorted((e, t) for e in kept for t in range(lengths[e]))
  report = loader.corruption_report()
  assert report["skipped_records"] == 5 and report["corrupt_shards"] == 2
  assert report["datasets"][NAME]["shards"] == {source.files[0]: [1, 3],
                                                source.files[1]: [0, 2, 3]}
  assert loader.metrics() == {"data/skipped_records": 5.0, "data/corrupt_shards": 2.0}
  warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  for shard in (0, 1):
    assert any(f"dataset '{NAME}'" in m and source.files[shard] in m for m in warned)
  # A second epoch meets the same records again: the counts stay exact.
  for _ in range(frames // 8 + 2):
    loader.next_local()
  assert loader.corruption_report()["skipped_records"] == 5
  # inspect_data reports the counts too.
  from experiments import inspect_data  # pylint: disable=g-import-not-at-top
  from experiments.configs import inspect_data as inspect_config  # pylint: disable=g-import-not-at-top
  config = inspect_config.get_config()
  config.data = lib.small_config(root, {NAME: 1.0}, on_corrupt="skip")
  config.stats_dir = str(tmp_path / "inspect_stats")
  report = inspect_data.inspect(config)[NAME]["corruption"]
  assert (report["skipped_records"], report["corrupt_shards"]) == (5, 2)


def test_skip_with_nothing_left_is_an_error_not_a_hang(pristine, tmp_path):
  root, source = _copy(pristine, tmp_path)
  for path in source.files:
    _truncate(path, 0)
  with pytest.raises(corruption.CorruptDataError, match="no episode could be read"):
    _loader(root, tmp_path, on_corrupt="skip")
  stats = {NAME: mixture.compute_stats(NAME, _copy(pristine, tmp_path / "clean")[1])}
  cfg = lib.small_config(root, {NAME: 1.0}, on_corrupt="skip")
  loader = loader_lib.DataLoader(cfg, stats=stats, process_index=0, process_count=1)
  with pytest.raises(corruption.CorruptDataError, match="all 8 records this process reads"):
    loader.next_local()


def test_on_corrupt_must_be_raise_or_skip(pristine, tmp_path):
  with pytest.raises(ValueError, match="data.on_corrupt"):
    _loader(pristine, tmp_path, on_corrupt="ignore")


# ---- zlib-compressed state ------------------------------------------------------------------------
def _state_dataset(tmp_path, name, state_feature, encode):
  """One 5-step episode of a generic dataset whose state uses `state_feature` (`encode(state)`)."""
  oxe_registry.register_generic(name, state_key="state", state_dim=7)
  rng = np.random.default_rng(3)
  state = rng.standard_normal((5, 7)).astype(np.float32)
  steps = {
      "observation": {"image": rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8),
                      "state": encode(state)},
      "action": rng.standard_normal((5, 7)).astype(np.float32),
      "language_instruction": [b"task"] * 5,
      "is_first": np.arange(5) == 0, "is_last": np.arange(5) == 4,
  }
  features = tfds.features.FeaturesDict({"steps": tfds.features.Dataset({
      "observation": {"image": tfds.features.Image(shape=(8, 8, 3), encoding_format="png"),
                      "state": state_feature},
      "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
      "language_instruction": tfds.features.Text(),
      "is_first": tfds.features.Scalar(dtype=np.bool_),
      "is_last": tfds.features.Scalar(dtype=np.bool_)})})
  directory = writer.write_rlds(str(tmp_path), name, {"train": [{"steps": steps}]},
                                features=features)
  return state, rlds.RldsSource(directory)


def test_zlib_bytes_state_decodes_like_tfds_zlib(tmp_path):
  zlib_tensor = tfds.features.Tensor(shape=(7,), dtype=np.float32,
                                     encoding=tfds.features.Encoding.ZLIB)
  as_bytes = tfds.features.Tensor(shape=(), dtype=tf.string)
  cases = {
      "test_state_tfds_zlib": (zlib_tensor, lambda s: s),
      "test_state_zlib_bytes": (as_bytes, lambda s: [zlib.compress(row.tobytes()) for row in s]),
  }
  for name, (feature, encode) in cases.items():
    state, source = _state_dataset(tmp_path, name, feature, encode)
    serialized = next(iter(source.read_windows(tf.constant(source.windows(1)))))
    # On disk both are zlib-compressed float32 bytes per step.
    stored = tf.train.Example.FromString(serialized.numpy()).features.feature[STATE_KEY]
    np.testing.assert_array_equal(
        np.frombuffer(zlib.decompress(stored.bytes_list.value[2]), np.float32), state[2])
    proprio = oxe_registry.standardize(name, source.parse_episode(serialized))["proprio"]
    np.testing.assert_array_equal(proprio.numpy(), state, err_msg=name)       # eager
    stats = mixture.compute_stats(name, source)                                # in tf.data
    np.testing.assert_allclose(stats["proprio"]["mean"], state.mean(0), rtol=1e-5, atol=1e-6)
  # Bytes that are not zlib raise an error naming the feature (was: "Cast string to float").
  name = "test_state_bad_bytes"
  _, source = _state_dataset(tmp_path, name, as_bytes, lambda s: [b"raw, not zlib"] * len(s))
  with pytest.raises(corruption.CorruptDataError, match="incorrect header check") as error:
    mixture.compute_stats(name, source, 4, corruption.RecordGuard(source))
  assert f"dataset '{name}'" in str(error.value) and error.value.feature == STATE_KEY
  assert source.files[0] in str(error.value)
