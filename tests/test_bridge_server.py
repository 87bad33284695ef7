"""Policy server over a real WebSocket: openpi-format clients, concurrency, malformed requests,
error frames that never leak a traceback or a path, the API key, the loopback default."""
import inspect
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from experiments.configs import serve_policy as serve_configs
from vlajax.bridge import policies, protocol
from vlajax.bridge.client import AuthenticationError, PolicyClient, ServerError, ServerUnavailable
from vlajax.bridge.server import PolicyServer

H, D = 4, 3
OBS_SPEC = {"state": ((5,), "float32"), "image": {"wrist": ((16, 16, 3), "uint8")}, "prompt": ((), "str")}
MAX_FRAME = 256 * 1024


def _make_jax_policy():
  """A real jitted JAX policy: a tiny random MLP over state + mean image intensity."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  w1 = jax.random.normal(k1, (6, 16)) * 0.3
  w2 = jax.random.normal(k2, (16, H * D)) * 0.3

  @jax.jit
  def chunk(state, image):
    feat = jnp.concatenate([state, jnp.mean(image.astype(jnp.float32) / 255.0)[None]])
    return jnp.tanh(jnp.tanh(feat @ w1) @ w2).reshape(H, D)

  @jax.jit
  def python_branch_on_a_tracer(state):
    if state[0] > 0:  # a real JAX error whose message names this file
      return state
    return -state

  def infer(obs):
    if obs["prompt"] == "raise":
      raise RuntimeError("policy exploded on purpose")
    if obs["prompt"] in POLICY_FAILURES:
      POLICY_FAILURES[obs["prompt"]](obs)
    if obs["prompt"] == "raise-jax":
      python_branch_on_a_tracer(jnp.asarray(obs["state"]))
    if obs["prompt"] == "bad-shape":
      return np.zeros((H + 1, D))
    if obs["prompt"] == "nan":
      return np.full((H, D), np.nan)
    if obs["prompt"].startswith("sleep"):
      time.sleep(float(obs["prompt"].split()[1]))
    return chunk(obs["state"], obs["image"]["wrist"])

  return policies.load_policy("callable", fn=infer, observation_spec=OBS_SPEC, action_dim=D,
                              chunk_length=H, control_hz=50.0, model_id="tiny-mlp"), chunk


def _raise(err):
  raise err


# Policy failures whose messages hold server paths or traceback text (real exceptions of Python,
# numpy and, in `infer`, JAX): none of that may reach a client.
POLICY_FAILURES = {
    "raise-path": lambda obs: _raise(FileNotFoundError(2, "No such file or directory", "/home/x/secret.py")),
    "raise-open": lambda obs: open("/home/x/secret.py", encoding="utf-8"),
    "raise-numpy": lambda obs: np.load("/nonexistent/dir/secret.npy"),
    "raise-traceback": lambda obs: _raise(RuntimeError(
        'Traceback (most recent call last):\n  File "/home/x/secret.py", line 1, in <module>')),
    "raise-protocol-path": lambda obs: _raise(protocol.ProtocolError("cannot read /home/x/secret.py")),
    "raise-key": lambda obs: {}["/home/x/secret.py"],
}


@pytest.fixture(scope="module")
def served():
  policy, chunk = _make_jax_policy()
  server = PolicyServer(policy, "127.0.0.1", 0, max_frame_bytes=MAX_FRAME).start()
  yield server, chunk
  server.stop()


def _obs(seed=0, prompt="hello"):
  rng = np.random.default_rng(seed)
  return {"state": rng.normal(size=5), "image": {"wrist": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)},
          "prompt": prompt}


# --- an openpi-client-format client, written from the published message format ---------------------

def _openpi_pack(obj):
  def default(o):
    if isinstance(o, (np.ndarray, np.generic)) and o.dtype.kind in ("V", "O", "c"):
      raise ValueError(f"Unsupported dtype: {o.dtype}")
    if isinstance(o, np.ndarray):
      return {b"__ndarray__": True, b"data": o.tobytes(), b"dtype": o.dtype.str, b"shape": o.shape}
    if isinstance(o, np.generic):
      return {b"__npgeneric__": True, b"data": o.item(), b"dtype": o.dtype.str}
    return o
  return msgpack.Packer(default=default).pack(obj)


def _openpi_unpack(data):
  def hook(o):
    if b"__ndarray__" in o:
      return np.ndarray(buffer=o[b"data"], dtype=np.dtype(o[b"dtype"]), shape=o[b"shape"])
    if b"__npgeneric__" in o:
      return np.dtype(o[b"dtype"]).type(o[b"data"])
    return o
  return msgpack.unpackb(data, object_hook=hook)


class OpenpiStyleClient:
  """Connect, read the metadata frame, send packed observations; a text frame means an error."""

  def __init__(self, port):
    self.ws = connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None)
    self.metadata = _openpi_unpack(self.ws.recv())

  def infer(self, obs):
    self.ws.send(_openpi_pack(obs))
    reply = self.ws.recv()
    if isinstance(reply, str):
      raise RuntimeError(f"Error in inference server:\n{reply}")
    return _openpi_unpack(reply)


def test_healthz_answers_200(served):
  server, _ = served
  with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as resp:
    assert resp.status == 200 and resp.read() == b"OK\n"
  with pytest.raises(urllib.error.HTTPError):  # not a WebSocket upgrade and not /healthz
    urllib.request.urlopen(f"http://127.0.0.1:{server.port}/other", timeout=10)


def test_openpi_format_client_talks_to_our_server(served):
  server, chunk = served
  obs = _obs(1)
  assert _openpi_pack(obs) == protocol.packb(obs)  # the same bytes as our own codec
  client = OpenpiStyleClient(server.port)
  meta = client.metadata
  assert meta["chunk_length"] == H and meta["model_id"] == "tiny-mlp"
  assert meta["action_spec"]["actions"]["shape"] == [H, D]
  assert meta["observation_spec"]["image"]["wrist"] == {"shape": [16, 16, 3], "dtype": "uint8"}
  reply = client.infer(obs)
  expected = np.asarray(chunk(obs["state"].astype(np.float32), obs["image"]["wrist"]))
  np.testing.assert_allclose(reply["actions"], expected, rtol=1e-5, atol=1e-6)
  assert reply["actions"].dtype == np.float32
  assert reply["server_timing"]["infer_ms"] > 0
  assert "prev_total_ms" in client.infer(obs)["server_timing"]
  with pytest.raises(RuntimeError, match="Error in inference server"):
    client.infer({"state": np.zeros(5)})
  np.testing.assert_allclose(client.infer(obs)["actions"], expected, rtol=1e-5, atol=1e-6)


def test_our_client_and_latency_reporting(served):
  server, _ = served
  before = server.stats.requests
  with PolicyClient("127.0.0.1", server.port) as client:
    assert client.observation_spec["state"] == protocol.ArraySpec((5,), "float32")
    for i in range(3):
      reply = client.infer(_obs(i))
      assert reply["actions"].shape == (H, D) and reply["policy_timing"]["infer_ms"] >= 0
  assert server.stats.requests - before == 3
  time.sleep(0.1)  # the latency of a request is recorded just after its reply is sent
  assert len(server.stats.latencies_ms) >= 3 and server.stats.summary()["latency_ms_p50"] > 0


def test_concurrent_clients_do_not_block_each_other(served):
  server, _ = served
  sleep, per_client = 0.4, 2
  errors = []

  def work():
    try:
      with PolicyClient("127.0.0.1", server.port) as client:
        for _ in range(per_client):
          client.infer(_obs(prompt=f"sleep {sleep}"))
    except Exception as err:  # pylint: disable=broad-except
      errors.append(err)

  threads = [threading.Thread(target=work) for _ in range(3)]
  start = time.perf_counter()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  elapsed = time.perf_counter() - start
  assert not errors
  serial = 3 * per_client * sleep  # 2.4 s if the event loop were blocked
  assert elapsed < 0.75 * serial, elapsed


def _raw(fields):
  return msgpack.packb(fields)


MALFORMED = {
    "not_msgpack": b"\xc1\xc1\xc1",
    "truncated": protocol.packb(_obs())[:-7],
    "not_a_dict": protocol.packb([1, 2, 3]),
    "text_frame": "hello",
    "missing_field": protocol.packb({"state": np.zeros(5), "prompt": "x"}),
    "wrong_shape": protocol.packb({**_obs(), "state": np.zeros(6)}),
    "wrong_dtype": protocol.packb({**_obs(), "image": {"wrist": np.zeros((16, 16, 3), np.float32)}}),
    "nan": protocol.packb({**_obs(), "state": np.array([0, np.nan, 0, 0, 0.0])}),
    "inf": protocol.packb({**_obs(), "state": np.array([0, np.inf, 0, 0, 0.0])}),
    "object_dtype": _raw({"state": {b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]}}),
    "bad_payload_len": _raw({"state": {b"__ndarray__": True, b"data": b"\x00" * 3, b"dtype": "<f4", b"shape": [5]}}),
    "unknown_version": protocol.packb({**_obs(), protocol.VERSION_KEY: 99}),
    "string_for_array": protocol.packb({**_obs(), "state": "0 0 0 0 0"}),
    "policy_raises": protocol.packb(_obs(prompt="raise")),
    "policy_nan": protocol.packb(_obs(prompt="nan")),
    "ragged_state": protocol.packb({**_obs(), "state": [[1, 2], [3]]}),
    "ragged_image": protocol.packb({**_obs(), "image": {"wrist": [[[0, 0, 0]] * 16] * 15 + [[[0, 0, 0]] * 2]}}),
    "string_in_list": protocol.packb({**_obs(), "state": [0, 1, "2", 3, 4]}),
    "dict_for_array": protocol.packb({**_obs(), "state": {"q": np.zeros(5)}}),
    "array_for_dict": protocol.packb({**_obs(), "image": np.zeros((16, 16, 3), np.uint8)}),
    "policy_path_error": protocol.packb(_obs(prompt="raise-path")),
}
EXPECTED_TEXT = {
    "not_msgpack": "not valid msgpack", "truncated": "not valid msgpack", "not_a_dict": "must be a dict",
    "text_frame": "text frame", "missing_field": "missing field 'image'", "wrong_shape": "shape (6,)",
    "wrong_dtype": "dtype float32, expected uint8", "nan": "non-finite", "inf": "non-finite",
    "object_dtype": "refused", "bad_payload_len": "3 bytes", "unknown_version": "unknown protocol version 99",
    "string_for_array": "'state' must be an array",
    "policy_raises": "InternalError: the policy failed on this request (RuntimeError; see the server log)",
    "policy_nan": "InternalError: the policy returned non-finite actions",
    "ragged_state": "ProtocolError: field 'state': ragged nested list: 'state[0]' has 2 elements but 'state[1]' has 1",
    "ragged_image": "ProtocolError: field 'image.wrist': ragged nested list: 'image.wrist[0]' has 16 elements "
                    "but 'image.wrist[15]' has 2",
    "string_in_list": "field 'state': 'state[2]' is a string, expected a number",
    "dict_for_array": "field 'state' must be an array of float32[5], got dict",
    "array_for_dict": "field 'image' must be a dict, got ndarray",
    "policy_path_error": "InternalError: the policy failed on this request (FileNotFoundError; see the server log)",
}


def test_each_malformed_request_gets_an_error_and_the_server_keeps_serving(served):
  server, _ = served
  errors_before = server.stats.errors
  ws = connect(f"ws://127.0.0.1:{server.port}", compression=None, max_size=None)
  ws.recv()  # metadata
  for name, frame in MALFORMED.items():
    ws.send(frame)
    reply = ws.recv(timeout=30)
    assert isinstance(reply, str), name
    assert EXPECTED_TEXT[name] in reply, (name, reply)
    assert reply.startswith(("ProtocolError: ", "InternalError: ")) and "\n" not in reply, (name, reply)
    assert "exploded" not in reply and "secret" not in reply, (name, reply)  # policy messages stay home
    ws.send(protocol.packb(_obs()))  # the same connection still works
    assert protocol.unpackb(ws.recv(timeout=30))["actions"].shape == (H, D), name
  assert server.stats.errors - errors_before == len(MALFORMED)
  ws.close()


def test_fuzzed_frames_never_kill_the_server(served):
  server, _ = served
  rng = np.random.default_rng(0)
  good = bytearray(protocol.packb(_obs()))
  ws = connect(f"ws://127.0.0.1:{server.port}", compression=None, max_size=None)
  ws.recv()
  outcomes = {"ok": 0, "error": 0}
  for _ in range(150):
    frame = bytearray(good)
    for pos in rng.integers(0, len(frame), size=rng.integers(1, 6)):
      frame[pos] = rng.integers(0, 256)
    if rng.random() < 0.3:
      frame = frame[: rng.integers(0, len(frame))]
    ws.send(bytes(frame))
    reply = ws.recv(timeout=30)
    outcomes["error" if isinstance(reply, str) else "ok"] += 1
    if not isinstance(reply, str):
      assert np.all(np.isfinite(protocol.unpackb(reply)["actions"]))
  assert outcomes["error"] > 0
  ws.send(protocol.packb(_obs()))
  assert protocol.unpackb(ws.recv(timeout=30))["actions"].shape == (H, D)
  ws.close()


def test_huge_frame_is_refused_and_server_keeps_serving(served):
  server, _ = served
  with PolicyClient("127.0.0.1", server.port) as client:
    huge = {**_obs(), "state": np.zeros(MAX_FRAME // 4 + 1000, np.float32)}
    with pytest.raises(ServerUnavailable, match=r"1009.*exceeds limit of 262144 bytes"):
      client.infer(huge)
  with PolicyClient("127.0.0.1", server.port) as client:  # new connections are served
    assert client.infer(_obs())["actions"].shape == (H, D)


def test_our_client_raises_server_error_and_recovers(served):
  server, _ = served
  with PolicyClient("127.0.0.1", server.port) as client:
    with pytest.raises(ServerError, match="'state' has shape"):
      client.infer({**_obs(), "state": np.zeros(2)})
    assert client.infer(_obs())["actions"].shape == (H, D)


def test_client_timeout_then_reconnects(served):
  server, _ = served
  with PolicyClient("127.0.0.1", server.port, request_timeout=0.2) as client:
    with pytest.raises(TimeoutError):
      client.infer(_obs(prompt="sleep 1.0"))
    client.request_timeout = 30
    reply = client.infer(_obs(2))  # a fresh connection: the late reply is not misread
    assert reply["actions"].shape == (H, D)


def test_unknown_policy_kind_names_it():
  with pytest.raises(KeyError, match="unknown policy kind 'nope'.*callable"):
    policies.load_policy("nope")


def test_client_fails_cleanly_when_no_server():
  with pytest.raises(ServerUnavailable, match="cannot connect"):
    PolicyClient("127.0.0.1", 1, connect_timeout=0.3)


def test_ragged_observation_through_our_client_names_the_field(served):
  server, _ = served
  with PolicyClient("127.0.0.1", server.port) as client:
    ragged = [[[0, 0, 0]] * 16] * 15 + [[[0, 0, 0]] * 16, [[0, 0]]]
    with pytest.raises(ServerError, match=r"^ProtocolError: field 'image\.wrist': ragged nested list"):
      client.infer({**_obs(), "image": {"wrist": ragged}})
    with pytest.raises(ServerError, match=r"^ProtocolError: field 'state': ragged nested list"):
      client.infer({**_obs(), "state": [[1, 2], [3]]})
    assert client.infer(_obs())["actions"].shape == (H, D)


# --- error frames never carry a traceback or a path ----------------------------------------------

_LEAK = re.compile(r"Traceback|File \"|/[A-Za-z0-9_.-]+/|[A-Za-z]:\\|secret")


def _ragged_list(rng, shape):
  """Nested lists of `shape` with one sub-list (at a random depth) one element short or long."""
  def build(dims):
    return [build(dims[1:]) for _ in range(dims[0])] if dims else float(rng.normal())
  value = build(shape)
  depth = int(rng.integers(0, len(shape) - 1)) if len(shape) > 1 else 0
  node = value
  for _ in range(depth):
    node = node[int(rng.integers(0, len(node)))]
  i = int(rng.integers(0, len(node)))
  node[i] = node[i][:-1] if isinstance(node[i], list) and rng.random() < 0.5 else [node[i], node[i]]
  return value


def _malformed_frames(rng):
  """Frames that must all be refused: (category, frame)."""
  frames = []
  good = protocol.packb(_obs())
  for _ in range(40):  # ragged lists in a leaf, at any depth
    field = rng.choice(["state", "wrist"])
    shape = [5] if field == "state" else [int(rng.integers(2, 5)), int(rng.integers(2, 5)), 3]
    obs = _obs()
    if field == "state":
      obs["state"] = _ragged_list(rng, [2, 3] if rng.random() < 0.5 else shape)
    else:
      obs["image"] = {"wrist": _ragged_list(rng, shape)}
    frames.append(("ragged", protocol.packb(obs)))
  wrong = [None, True, "0 1 2 3 4", b"\x00" * 20, {"a": 1}, [None] * 5, [{"x": 1}] * 5, 2**64 - 1,
           -2**63, 1.5, [["a"]], [b"ab"] * 5, msgpack.ExtType(5, b"xx"), msgpack.Timestamp(0),
           [msgpack.ExtType(1, b"")] * 5, [[1.0] * 5] * 2, [1.0, [2.0], 3.0, 4.0, 5.0]]
  for value in wrong:  # wrong types in every field and as the whole message
    for field in ("state", "image", "wrist", "prompt", "whole"):
      if field == "prompt" and isinstance(value, (str, bytes)):
        continue  # a valid prompt
      obs = _obs()
      if field == "wrist":
        obs["image"] = {"wrist": value}
      elif field == "whole":
        obs = value
      else:
        obs[field] = value
      frames.append(("wrong_type", msgpack.packb(obs, default=protocol._encode_numpy)))  # pylint: disable=protected-access
  for depth in (65, 100, 1000, 20000):  # huge nesting: lists, maps, inside a field and bare
    frames.append(("nesting", b"\x91" * depth + b"\xc0"))
    frames.append(("nesting", b"\x81\xa1a" * depth + b"\xc0"))
    inner = b"\x91" * depth + b"\xcb" + np.float64(1).tobytes()[::-1]
    frames.append(("nesting", b"\x83" + msgpack.packb("state") + inner + msgpack.packb("image")
                   + msgpack.packb({"wrist": 0}) + msgpack.packb("prompt") + msgpack.packb("x")))
  for _ in range(40):  # not msgpack at all, or cut short
    frames.append(("bad_msgpack", bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
                   .replace(b"\x80", b"\xc1")))  # \x80 alone would be a valid empty map
    frames.append(("bad_msgpack", good[: int(rng.integers(0, len(good) - 1))]))
  for dtype, shape, data in [("/home/x/secret.py", [1], b"\x00" * 4), ("|O", [1], b"\x00" * 8),
                             ("<c8", [1], b"\x00" * 8), ("<f4", [-1], b""), ("<f4", ["/etc/passwd"], b""),
                             ("<f4", [5], "not bytes"), ("<f4", [2**62, 2**62], b""), (7, [5], b"\x00" * 20)]:
    raw = {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}
    frames.append(("bad_ndarray", msgpack.packb({"state": raw, "image": {"wrist": 0}, "prompt": "x"})))
  for version in ("/home/x/secret.py", [1, 2], {"v": 1}, None, True, 1.0, 2**64 - 1):
    frames.append(("bad_version", msgpack.packb({**{"x": 1}, protocol.VERSION_KEY: version})))
  for prompt in [*POLICY_FAILURES, "raise-jax", "raise", "nan", "bad-shape"]:
    frames.append(("policy", protocol.packb(_obs(prompt=prompt))))
  return frames


def test_no_error_frame_carries_a_traceback_or_a_path_and_the_server_stays_up(served, caplog):
  server, chunk = served
  rng = np.random.default_rng(0)
  frames = _malformed_frames(rng)
  order = rng.permutation(len(frames))
  errors_before = server.stats.errors
  ws = connect(f"ws://127.0.0.1:{server.port}", compression=None, max_size=None)
  ws.recv()
  kinds = {}
  with caplog.at_level(logging.WARNING, logger="vlajax.bridge.server"):
    for i in order:
      category, frame = frames[i]
      ws.send(frame)
      reply = ws.recv(timeout=30)
      assert isinstance(reply, str), (category, frame[:80])
      assert not _LEAK.search(reply), (category, reply)
      assert "\n" not in reply and len(reply) <= 500, (category, reply)
      kind = reply.split(":", 1)[0]
      assert kind in ("ProtocolError", "InternalError"), (category, reply)
      kinds.setdefault(category, set()).add(kind)
  assert len(frames) > 200 and server.stats.errors - errors_before == len(frames)
  assert kinds["ragged"] == kinds["wrong_type"] == kinds["nesting"] == kinds["bad_msgpack"] == {"ProtocolError"}
  assert kinds["policy"] == {"InternalError"}  # a failure on the server's side, never the client's
  # the same connection and new ones are still served
  obs = _obs(3)
  expected = np.asarray(chunk(obs["state"].astype(np.float32), obs["image"]["wrist"]))
  ws.send(protocol.packb(obs))
  np.testing.assert_allclose(protocol.unpackb(ws.recv(timeout=30))["actions"], expected, rtol=1e-5, atol=1e-6)
  ws.close()
  with PolicyClient("127.0.0.1", server.port) as client:
    np.testing.assert_allclose(client.infer(obs)["actions"], expected, rtol=1e-5, atol=1e-6)
  # ... while the server's own log has the tracebacks, paths included
  logged = "\n".join(caplog.text.splitlines())
  assert "Traceback" in logged and "/home/x/secret.py" in logged and "TracerBoolConversionError" in logged


def test_error_frames_before_this_change_would_have_leaked():
  """The leak check itself catches what the old server sent (the message plus format_exc)."""
  try:
    np.load("/nonexistent/dir/secret.npy")
  except FileNotFoundError as err:
    import traceback  # pylint: disable=import-outside-toplevel
    old_style = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
  assert _LEAK.search(old_style)


# --- API key ---------------------------------------------------------------------------------------

KEY = "k3y-Of-the-test_server"


@pytest.fixture(scope="module")
def keyed(served):
  server = PolicyServer(served[0].policy, "127.0.0.1", 0, api_key=KEY).start()
  yield server
  server.stop()


def test_api_key_accepted_with_the_right_header(keyed):
  with PolicyClient("127.0.0.1", keyed.port, api_key=KEY) as client:
    assert client.infer(_obs())["actions"].shape == (H, D)
  # what openpi-client sends for its api_key, on a plain websockets connection
  ws = connect(f"ws://127.0.0.1:{keyed.port}", compression=None, max_size=None,
               additional_headers={"Authorization": f"Api-Key {KEY}"})
  assert _openpi_unpack(ws.recv())["model_id"] == "tiny-mlp"
  ws.send(_openpi_pack(_obs()))
  assert _openpi_unpack(ws.recv(timeout=30))["actions"].shape == (H, D)
  ws.close()
  with urllib.request.urlopen(f"http://127.0.0.1:{keyed.port}/healthz", timeout=10) as resp:
    assert resp.status == 200  # health checks need no key


@pytest.mark.parametrize("api_key, said", [(None, "no API key was given"), ("bad-key-123", "the API key was refused"),
                                           (KEY + "x", "the API key was refused"),
                                           (KEY[:-1], "the API key was refused")])
def test_client_without_or_with_a_wrong_key_gets_a_clear_error_at_once(keyed, caplog, api_key, said):
  start = time.perf_counter()
  with caplog.at_level(logging.WARNING, logger="vlajax.bridge.server"):
    with pytest.raises(AuthenticationError, match=rf"refused the connection \(HTTP 401\): {said}") as err:
      PolicyClient("127.0.0.1", keyed.port, api_key=api_key, connect_timeout=30)
  assert time.perf_counter() - start < 10  # not retried until connect_timeout
  assert "Authorization: Api-Key <key>" in str(err.value)  # the server's hint is passed on
  assert isinstance(err.value, ServerError)
  refusals = [r.getMessage() for r in caplog.records if "refused connection" in r.getMessage()]
  assert refusals and ("no Authorization header" if api_key is None else "wrong API key") in refusals[-1]
  assert KEY not in caplog.text and (api_key is None or api_key not in caplog.text)  # keys are never logged


@pytest.mark.parametrize("headers, reason", [
    (None, "no Authorization header"),
    ({"Authorization": f"Bearer {KEY}"}, "scheme is not Api-Key"),
    ({"Authorization": KEY}, "scheme is not Api-Key"),
    ({"Authorization": "Api-Key"}, "wrong API key"),
    ({"Authorization": "Api-Key " + "\u00e9" * 8}, "wrong API key"),
    ([("Authorization", "Api-Key x"), ("Authorization", f"Api-Key {KEY}")], "several Authorization headers"),
])
def test_handshake_without_the_key_is_refused_with_401(keyed, caplog, headers, reason):
  with caplog.at_level(logging.WARNING, logger="vlajax.bridge.server"):
    with pytest.raises(InvalidStatus) as err:
      connect(f"ws://127.0.0.1:{keyed.port}", compression=None, additional_headers=headers, open_timeout=10)
  assert err.value.response.status_code == 401
  assert err.value.response.headers["WWW-Authenticate"] == "Api-Key"
  assert reason in err.value.response.body.decode()
  assert any(reason in r.getMessage() for r in caplog.records)
  with pytest.raises(urllib.error.HTTPError) as http_err:  # plain HTTP is refused as well
    urllib.request.urlopen(f"http://127.0.0.1:{keyed.port}/", timeout=10)
  assert http_err.value.code == 401
  with PolicyClient("127.0.0.1", keyed.port, api_key=KEY) as client:  # and the server keeps serving
    assert client.infer(_obs())["actions"].shape == (H, D)


def test_api_key_is_off_by_default(served):
  server, _ = served
  assert inspect.signature(PolicyServer).parameters["api_key"].default is None
  assert serve_configs.get_config("demo").server.api_key == ""
  with pytest.raises(ValueError, match="api_key is blank"):  # a blank key is a mistake, not "off"
    PolicyServer(server.policy, api_key="  ")
  with PolicyClient("127.0.0.1", server.port) as client:  # no header needed
    assert client.infer(_obs())["actions"].shape == (H, D)
  with PolicyClient("127.0.0.1", server.port, api_key="anything") as client:  # and one is ignored
    assert client.infer(_obs())["actions"].shape == (H, D)


# --- binding ---------------------------------------------------------------------------------------

def _non_loopback_ipv4():
  """This machine's address on its default route, or None (no network)."""
  try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
      sock.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
      address = sock.getsockname()[0]
  except OSError:
    return None
  return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_default_bind_host_is_loopback(served):
  assert inspect.signature(PolicyServer).parameters["host"].default == "127.0.0.1"
  assert serve_configs.get_config("ppo").server.host == "127.0.0.1"
  with PolicyServer(served[0].policy, port=0) as server:
    assert server.host == "127.0.0.1"
    assert server.bound_addresses and all(a[0] == "127.0.0.1" for a in server.bound_addresses)
    with PolicyClient("127.0.0.1", server.port) as client:
      assert client.infer(_obs())["actions"].shape == (H, D)
    other = _non_loopback_ipv4()
    if other is not None:  # not reachable from another interface
      with pytest.raises(OSError):
        socket.create_connection((other, server.port), timeout=2).close()
