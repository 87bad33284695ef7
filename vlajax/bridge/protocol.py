"""Wire protocol of the policy server: msgpack with numpy arrays, openpi-compatible.

Frames (WebSocket, binary unless noted):

* server -> client, once on connect: the metadata dict (see `make_metadata`).
* client -> server: an observation dict (nested dicts of arrays / scalars / strings).
* server -> client: an action dict, e.g. ``{"actions": float32[H, D], "server_timing": {...}}``.
* server -> client, on a bad request: a *text* frame with one readable line, ``"<Kind>: <message>"``
  (openpi's clients raise on a text frame); never a traceback or a server path (see
  `vlajax.bridge.server`). Our server keeps the connection open and goes on serving.

Encoding (the format that openpi-client's ``msgpack_numpy`` writes and reads):

* ``np.ndarray`` -> ``{b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str,
  b"shape": arr.shape}``
* ``np.generic`` -> ``{b"__npgeneric__": True, b"data": x.item(), b"dtype": x.dtype.str}``
* object, void and complex dtypes are refused in both directions (nothing is ever unpickled).

Validation (`conform`): every leaf of a request is checked against the advertised spec, and anything
that is not a conforming array (a ragged or too deeply nested list, an object array, strings where
numbers are expected, a dict where an array is expected or the reverse, a wrong shape or dtype, a
non-finite value) is a `ProtocolError` naming the field by its dotted path and list index, e.g.
``field 'image.wrist[3]' ...``.

Our extensions are invisible to openpi clients: the metadata dict carries specs and a protocol
version, and a request may carry the reserved key ``"__protocol_version__"`` which the server checks
and strips before inference.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
VERSION_KEY = "__protocol_version__"
_REFUSED_KINDS = ("O", "V", "c")
_MAX_LIST_DEPTH = 64  # at most this many dimensions (numpy 2's own limit)


class ProtocolError(ValueError):
  """A request or reply that does not follow the wire format or the advertised specs."""


def _brief(value: Any, limit: int = 40) -> str:
  """`repr(value)` cut to `limit` characters: client input echoed in an error stays short."""
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# msgpack <-> numpy
# ----------------------------------------------------------------------------------------------

def _encode_numpy(obj: Any) -> Any:
  if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REFUSED_KINDS:
    raise ProtocolError(f"arrays of dtype {obj.dtype} cannot be sent (object, void and complex refused)")
  if isinstance(obj, np.ndarray):
    return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str,
            b"shape": obj.shape}
  if isinstance(obj, np.generic):
    return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
  if hasattr(obj, "__array__"):  # e.g. jax.Array: send as a numpy array.
    return _encode_numpy(np.asarray(obj))
  raise TypeError(f"cannot encode object of type {type(obj).__name__}")


def _parse_dtype(code: Any) -> np.dtype:
  if isinstance(code, bytes):
    code = code.decode("ascii", errors="replace")
  if not isinstance(code, str):
    raise ProtocolError(f"array dtype must be a string, got {type(code).__name__}")
  try:
    dtype = np.dtype(code)
  except (TypeError, ValueError) as err:
    raise ProtocolError(f"unknown array dtype {_brief(code)}") from err
  if dtype.kind in _REFUSED_KINDS:
    raise ProtocolError(f"array dtype {dtype} refused (object, void and complex dtypes)")
  return dtype


def _decode_numpy(obj: dict) -> Any:
  if b"__ndarray__" in obj:
    dtype = _parse_dtype(obj.get(b"dtype"))
    shape = obj.get(b"shape")
    data = obj.get(b"data")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and s >= 0 for s in shape):
      raise ProtocolError(f"array shape must be a list of non-negative ints, got {_brief(shape)}")
    if len(shape) > _MAX_LIST_DEPTH:
      raise ProtocolError(f"array has {len(shape)} dimensions (at most {_MAX_LIST_DEPTH})")
    if not isinstance(data, bytes):
      raise ProtocolError("array data must be bytes")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge shape cannot overflow
    if len(data) != expected:
      raise ProtocolError(
          f"array data has {len(data)} bytes but shape {tuple(shape)} of {dtype} needs {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)
  if b"__npgeneric__" in obj:
    dtype = _parse_dtype(obj.get(b"dtype"))
    try:
      return dtype.type(obj.get(b"data"))
    except (TypeError, ValueError, OverflowError) as err:
      raise ProtocolError(f"bad numpy scalar of dtype {dtype}: {type(err).__name__}") from err
  return obj


def packb(obj: Any) -> bytes:
  """Encodes a (nested) message to msgpack bytes, numpy arrays as ``__ndarray__`` maps."""
  return msgpack.packb(obj, default=_encode_numpy)


def unpackb(data: bytes) -> Any:
  """Decodes msgpack bytes to a message. Raises `ProtocolError` on anything malformed."""
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise ProtocolError(f"expected a binary frame, got {type(data).__name__}")
  try:
    return msgpack.unpackb(bytes(data), object_hook=_decode_numpy, strict_map_key=False)
  except ProtocolError:
    raise
  except Exception as err:  # msgpack raises several exception types on garbage.
    raise ProtocolError(f"frame is not valid msgpack: {type(err).__name__}: {err}") from err


# ----------------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ArraySpec:
  """Shape and dtype of one observation or action leaf. dtype "str" marks a text field (prompt)."""

  shape: tuple[int, ...]
  dtype: str

  def to_wire(self) -> dict:
    return {"shape": list(self.shape), "dtype": self.dtype}

  @classmethod
  def from_wire(cls, wire: Mapping) -> "ArraySpec":
    return cls(tuple(int(s) for s in wire["shape"]), str(wire["dtype"]))

  def zeros(self) -> Any:
    if self.dtype == "str":
      return ""
    return np.zeros(self.shape, self.dtype)


SpecTree = Mapping[str, Any]  # nested dicts with ArraySpec leaves


def spec_to_wire(spec: SpecTree) -> dict:
  return {k: v.to_wire() if isinstance(v, ArraySpec) else spec_to_wire(v) for k, v in spec.items()}


def spec_from_wire(wire: Mapping) -> dict:
  out = {}
  for k, v in wire.items():
    is_leaf = isinstance(v, Mapping) and set(v) == {"shape", "dtype"}
    out[k] = ArraySpec.from_wire(v) if is_leaf else spec_from_wire(v)
  return out


def zeros_like_spec(spec: SpecTree) -> dict:
  """A dummy observation/action that matches `spec` (used for jit warm-up)."""
  return {k: v.zeros() if isinstance(v, ArraySpec) else zeros_like_spec(v) for k, v in spec.items()}


def _is_number(value: Any) -> bool:
  """A scalar that numpy reads as a plain number (bool, int within 64 bits, float, numpy number)."""
  if isinstance(value, (bool, float, np.bool_, np.integer, np.floating)):
    return True
  return isinstance(value, int) and -2**63 <= value < 2**64


def _list_problem(value: Any, path: str) -> str | None:
  """Why nested lists `value` are not a rectangular array of numbers, naming the element; or None.

  Walks depth first and remembers, per depth, the first list seen (its length) or the first
  scalar: a list whose length differs, a list where a scalar was seen (or the reverse), a
  non-number leaf, or nesting deeper than `_MAX_LIST_DEPTH` is reported. Arrays inside the lists
  count as nested lists. Only called once numpy has refused `value` (the error path).
  """
  first: dict[int, tuple[int | None, str]] = {}  # depth -> (list length or None for a scalar, path)

  def walk(item: Any, where: str, depth: int) -> str | None:
    if isinstance(item, np.ndarray):
      item = item.tolist()
    is_list = isinstance(item, (list, tuple))
    seen = first.setdefault(depth, (len(item) if is_list else None, where))
    if is_list and seen[0] is None:
      return f"ragged nested list: '{where}' is a list but '{seen[1]}' is not"
    if not is_list and seen[0] is not None:
      return f"ragged nested list: '{seen[1]}' is a list but '{where}' is not ({type(item).__name__})"
    if not is_list:
      if isinstance(item, (str, bytes)):
        return f"'{where}' is a string, expected a number"
      if isinstance(item, int) and not isinstance(item, bool) and not _is_number(item):
        return f"'{where}' is an integer beyond 64 bits"
      if not _is_number(item):
        kind = "None" if item is None else f"a {type(item).__name__}"
        return f"'{where}' is {kind}, expected a number"
      return None
    if depth >= _MAX_LIST_DEPTH:
      return f"nested lists more than {_MAX_LIST_DEPTH} deep"
    if len(item) != seen[0]:
      return f"ragged nested list: '{seen[1]}' has {seen[0]} elements but '{where}' has {len(item)}"
    for i, sub in enumerate(item):
      problem = walk(sub, f"{where}[{i}]", depth + 1)
      if problem:
        return problem
    return None

  return walk(value, path, 0)


def _cast_leaf(path: str, value: Any, spec: ArraySpec, check_finite: bool) -> Any:
  if spec.dtype == "str":
    if isinstance(value, bytes):
      value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
      raise ProtocolError(f"field '{path}' must be a string, got {type(value).__name__}")
    return value
  want = np.dtype(spec.dtype)
  expected = f"expected an array of {want}{list(spec.shape)}"
  if isinstance(value, (str, bytes, Mapping, type(None))):
    raise ProtocolError(f"field '{path}' must be an array of {want}{list(spec.shape)}, "
                        f"got {type(value).__name__}")
  try:
    arr, cause = np.asarray(value), None
  except (ValueError, TypeError, OverflowError) as err:  # numpy's own message is not forwarded
    arr, cause = None, err
  if arr is None or arr.dtype.kind in _REFUSED_KINDS or arr.dtype.kind in "SU":
    # numpy raises on ragged lists and makes object / string arrays of mixed ones: name the element.
    problem = _list_problem(value, path) if isinstance(value, (list, tuple)) else None
    if problem:
      raise ProtocolError(f"field '{path}': {problem}; {expected}") from cause
    if arr is None:
      raise ProtocolError(f"field '{path}' cannot be read as an array ({type(cause).__name__}); "
                          f"{expected}") from cause
    raise ProtocolError(f"field '{path}' has dtype {arr.dtype}, expected {want}")
  if tuple(arr.shape) != tuple(spec.shape):
    raise ProtocolError(f"field '{path}' has shape {tuple(arr.shape)}, expected {tuple(spec.shape)}")
  # Floats accept any float or int input (clients send float64 state); integer fields (images)
  # demand the exact dtype so that a float image in [0, 1] is not silently truncated to zeros.
  if want.kind == "f":
    if arr.dtype.kind not in "fiub":
      raise ProtocolError(f"field '{path}' has dtype {arr.dtype}, expected {want}")
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, refused below
      arr = arr.astype(want, copy=False)
    if check_finite and not np.all(np.isfinite(arr)):
      raise ProtocolError(f"field '{path}' contains non-finite values (NaN or inf)")
  elif arr.dtype != want:
    hint = f" (a list arrives as {arr.dtype}: send a {want} numpy array)" if isinstance(value, list) else ""
    raise ProtocolError(f"field '{path}' has dtype {arr.dtype}, expected {want}{hint}")
  return arr


def conform(message: Any, spec: SpecTree, *, check_finite: bool = True, where: str = "observation",
            _prefix: str = "") -> dict:
  """Checks `message` against `spec`; returns it with float leaves cast to the spec dtype.

  Raises `ProtocolError` naming the field by its dotted path (``image.wrist``; list elements as
  ``state[1]``) for a missing key, a wrong container (a dict where an array is expected or the
  reverse), a ragged or non-numeric nested list, an object or string array, a wrong shape or
  dtype, or a non-finite value. Keys not in the spec are dropped (clients may send extra fields).
  """
  if not isinstance(message, Mapping):
    name = f"field '{_prefix[:-1]}'" if _prefix else where
    raise ProtocolError(f"{name} must be a dict, got {type(message).__name__}")
  out = {}
  for key, sub in spec.items():
    path = f"{_prefix}{key}"
    if key not in message:
      raise ProtocolError(f"{where} is missing field '{path}' (expected keys: {sorted(spec)})")
    if isinstance(sub, ArraySpec):
      out[key] = _cast_leaf(path, message[key], sub, check_finite)
    else:
      out[key] = conform(message[key], sub, check_finite=check_finite, where=where,
                         _prefix=path + ".")
  return out


def make_metadata(*, observation_spec: SpecTree, action_spec: SpecTree, control_hz: float,
                  chunk_length: int, model_id: str, extra: Mapping | None = None) -> dict:
  """The metadata frame the server sends on connect."""
  meta = {
      "protocol_version": PROTOCOL_VERSION,
      "model_id": model_id,
      "control_hz": float(control_hz),
      "chunk_length": int(chunk_length),
      "observation_spec": spec_to_wire(observation_spec),
      "action_spec": spec_to_wire(action_spec),
  }
  meta.update(dict(extra or {}))
  return meta
