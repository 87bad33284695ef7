"""Wire format: msgpack + numpy maps (openpi's format), specs and validation."""
import re

import msgpack
import numpy as np
import pytest

from vlajax.bridge import protocol
from vlajax.bridge.protocol import ArraySpec, ProtocolError


def _nested_observation():
  rng = np.random.default_rng(0)
  return {
      "state": rng.normal(size=7).astype(np.float32),
      "image": {
          "base_0_rgb": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
          "left_wrist_0_rgb": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
      },
      "image_mask": {"base_0_rgb": np.True_, "left_wrist_0_rgb": np.bool_(False)},
      "prompt": "pick up the red block",
      "step": np.int64(12),
      "gains": np.arange(6, dtype=np.float64).reshape(2, 3),
      "empty": np.zeros((0, 4), np.float32),
  }


def _assert_tree_equal(a, b):
  if isinstance(a, dict):
    assert set(a) == set(b)
    for k in a:
      _assert_tree_equal(a[k], b[k])
  elif isinstance(a, (np.ndarray, np.generic)):
    assert isinstance(b, type(a)) or (isinstance(a, np.ndarray) and isinstance(b, np.ndarray))
    assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
    np.testing.assert_array_equal(a, b)
  else:
    assert a == b


def test_round_trip_nested_observation_with_images():
  obs = _nested_observation()
  decoded = protocol.unpackb(protocol.packb(obs))
  _assert_tree_equal(obs, decoded)
  assert decoded["image"]["base_0_rgb"].dtype == np.uint8
  assert decoded["step"].dtype == np.int64 and isinstance(decoded["step"], np.int64)


def test_array_encoding_is_openpi_byte_format():
  """The exact bytes of a tiny array, built by hand from the msgpack spec and openpi's map layout."""
  arr = np.array([1, 2], dtype="<i2")
  expected = (b"\x84"
              + b"\xc4\x0b__ndarray__" + b"\xc3"
              + b"\xc4\x04data" + b"\xc4\x04\x01\x00\x02\x00"
              + b"\xc4\x05dtype" + b"\xa3<i2"
              + b"\xc4\x05shape" + b"\x91\x02")
  assert protocol.packb(arr) == expected
  scalar = np.float32(1.5)
  expected_scalar = (b"\x83" + b"\xc4\x0d__npgeneric__" + b"\xc3"
                     + b"\xc4\x04data" + msgpack.packb(1.5)
                     + b"\xc4\x05dtype" + b"\xa3<f4")
  assert protocol.packb(scalar) == expected_scalar


@pytest.mark.parametrize("bad", [np.array([object()], dtype=object), np.zeros(2, np.complex64),
                                 np.zeros(2, dtype=[("a", "f4")])])
def test_object_void_complex_refused_when_encoding(bad):
  with pytest.raises(ProtocolError, match="refused"):
    protocol.packb({"x": bad})


@pytest.mark.parametrize("dtype", ["|O", "<c8", "|V8", "not-a-dtype"])
def test_refused_or_unknown_dtypes_when_decoding(dtype):
  frame = msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": dtype, b"shape": [1]})
  with pytest.raises(ProtocolError, match="dtype"):
    protocol.unpackb(frame)


def test_inconsistent_array_payload_rejected():
  frame = msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 7, b"dtype": "<f4", b"shape": [2]})
  with pytest.raises(ProtocolError, match="7 bytes"):
    protocol.unpackb(frame)


@pytest.mark.parametrize("frame", [b"\xc1", b"\x85\xa1a", b"", b"\x92\x01"[:1]])
def test_garbage_is_protocol_error(frame):
  with pytest.raises(ProtocolError, match="not valid msgpack"):
    protocol.unpackb(frame)


SPEC = {"state": ArraySpec((3,), "float32"), "image": {"wrist": ArraySpec((4, 4, 3), "uint8")},
        "prompt": ArraySpec((), "str")}


def _valid():
  return {"state": np.zeros(3), "image": {"wrist": np.zeros((4, 4, 3), np.uint8)}, "prompt": "go",
          "extra": np.ones(2)}


def test_conform_casts_floats_and_drops_extra_keys():
  out = protocol.conform(_valid(), SPEC)
  assert out["state"].dtype == np.float32
  assert "extra" not in out


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o.pop("state"), "missing field 'state'"),
    (lambda o: o.__setitem__("state", np.zeros(4)), "'state' has shape (4,), expected (3,)"),
    (lambda o: o["image"].__setitem__("wrist", np.zeros((4, 4, 3), np.float32)),
     "'image.wrist' has dtype float32, expected uint8"),
    (lambda o: o.__setitem__("state", np.array([0.0, np.nan, 0.0])), "'state' contains non-finite"),
    (lambda o: o.__setitem__("state", "abc"), "'state' must be an array"),
    (lambda o: o.__setitem__("image", np.zeros(3)), "'image' must be a dict"),
    (lambda o: o.__setitem__("prompt", np.zeros(3)), "'prompt' must be a string"),
])
def test_conform_names_the_bad_field(mutate, message):
  obs = _valid()
  mutate(obs)
  with pytest.raises(ProtocolError) as err:
    protocol.conform(obs, SPEC)
  assert message in str(err.value)


def test_spec_wire_round_trip_and_metadata():
  wire = protocol.spec_to_wire(SPEC)
  assert protocol.spec_from_wire(protocol.unpackb(protocol.packb(wire))) == SPEC
  meta = protocol.make_metadata(observation_spec=SPEC, action_spec={"actions": ArraySpec((8, 7), "float32")},
                                control_hz=50, chunk_length=8, model_id="m")
  assert meta["protocol_version"] == protocol.PROTOCOL_VERSION
  assert meta["action_spec"]["actions"] == {"shape": [8, 7], "dtype": "float32"}
  zeros = protocol.zeros_like_spec(SPEC)
  assert zeros["image"]["wrist"].shape == (4, 4, 3) and zeros["prompt"] == ""


def _deep_list(depth):
  value = 0.0
  for _ in range(depth):
    value = [value]
  return value


# Values that are not an array of the spec (plain msgpack lists as a non-numpy client sends them):
# each must be a ProtocolError naming the field (dotted path, list index) and the problem.
NON_CONFORMABLE = [
    ("state", [[1, 2], [3]], "field 'state': ragged nested list: 'state[0]' has 2 elements but 'state[1]' has 1"),
    ("state", [[1.0], 2.0, 3.0], "'state[0]' is a list but 'state[1]' is not"),
    ("state", [1.0, [2.0], 3.0], "'state[1]' is a list but 'state[0]' is not"),
    ("wrist", [[[0, 0, 0]] * 4] * 3 + [[[0, 0, 0]] * 3],
     "field 'image.wrist': ragged nested list: 'image.wrist[0]' has 4 elements but 'image.wrist[3]' has 3"),
    ("wrist", [[[0, 0, 0]] * 4] * 3 + [[[0, 0, 0]] * 3 + [[0, 0]]], "'image.wrist[0][0]' has 3 elements but 'image.wrist[3][3]' has 2"),
    ("state", [1.0, "2", 3.0], "field 'state': 'state[1]' is a string, expected a number"),
    ("state", [1.0, b"2", 3.0], "'state[1]' is a string"),
    ("state", [1.0, None, 3.0], "'state[1]' is None, expected a number"),
    ("state", [1.0, {"x": 1}, 3.0], "'state[1]' is a dict, expected a number"),
    ("state", [1, 2**70, 3], "'state[1]' is an integer beyond 64 bits"),
    ("state", _deep_list(40), "field 'state' has shape (1, 1, 1"),
    ("state", _deep_list(100), "field 'state': nested lists more than 64 deep"),
    ("state", [np.zeros(2), np.zeros(3)], "'state[0]' has 2 elements but 'state[1]' has 3"),
    ("state", {"x": np.zeros(3)}, "field 'state' must be an array of float32[3], got dict"),
    ("state", [[0.0] * 3], "field 'state' has shape (1, 3), expected (3,)"),
    ("wrist", np.zeros((4, 4, 3), np.uint8).tolist(), "'image.wrist' has dtype int64, expected uint8"),
    ("wrist", {"rgb": np.zeros((4, 4, 3), np.uint8)}, "field 'image.wrist' must be an array of uint8"),
    ("image", [np.zeros((4, 4, 3), np.uint8)], "field 'image' must be a dict, got list"),
    ("prompt", ["go"], "field 'prompt' must be a string, got list"),
]


@pytest.mark.parametrize("field, value, message", NON_CONFORMABLE,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(NON_CONFORMABLE)])
def test_non_conformable_values_are_protocol_errors_naming_the_field(field, value, message):
  obs = _valid()
  if field == "wrist":
    obs["image"]["wrist"] = value
  else:
    obs[field] = value
  with pytest.raises(ProtocolError) as err:  # ProtocolError, not numpy's ValueError
    protocol.conform(obs, SPEC)
  text = str(err.value)
  assert message in text
  assert "inhomogeneous" not in text and "\n" not in text  # numpy's own text is not passed on


def test_ragged_values_survive_the_wire_and_are_still_refused():
  """Ragged lists and arrays inside lists, encoded by msgpack and decoded by the server's codec."""
  for value, message in [([[1, 2], [3]], "'state[0]' has 2 elements but 'state[1]' has 1"),
                         ([np.zeros(2, np.float32), np.zeros(1, np.float32)], "'state[0]' has 2")]:
    obs = protocol.unpackb(protocol.packb({**_valid(), "state": value}))
    with pytest.raises(ProtocolError, match=re.escape(message)):
      protocol.conform(obs, SPEC)


def test_nested_lists_that_do_conform_are_accepted():
  obs = {**_valid(), "state": [1, 2.5, True]}
  obs["image"]["wrist"] = np.zeros((4, 4, 3), np.uint8)
  out = protocol.conform(obs, SPEC)
  np.testing.assert_array_equal(out["state"], np.array([1, 2.5, 1], np.float32))
  assert out["state"].dtype == np.float32
  stacked = protocol.conform({**obs, "state": [np.float32(1), np.int64(2), 3]}, SPEC)
  np.testing.assert_array_equal(stacked["state"], [1, 2, 3])


def test_decoder_refuses_huge_shapes_and_echoes_little_client_input():
  huge = msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [2**40, 2**40]})
  with pytest.raises(ProtocolError, match="0 bytes but shape"):  # no int64 overflow to 0 bytes
    protocol.unpackb(huge)
  many_dims = msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [0] * 70})
  with pytest.raises(ProtocolError, match="70 dimensions"):
    protocol.unpackb(many_dims)
  long_dtype = msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "x" * 5000, b"shape": [0]})
  with pytest.raises(ProtocolError, match="unknown array dtype") as err:
    protocol.unpackb(long_dtype)
  assert len(str(err.value)) < 100
