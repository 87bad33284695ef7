"""Policy server over a real WebSocket: openpi-format clients, concurrency, malformed requests."""
import threading
import time
import urllib.error
import urllib.request

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from websockets.sync.client import connect

from vlajax.bridge import policies, protocol
from vlajax.bridge.client import PolicyClient, ServerError, ServerUnavailable
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

  def infer(obs):
    if obs["prompt"] == "raise":
      raise RuntimeError("policy exploded on purpose")
    if obs["prompt"] == "nan":
      return np.full((H, D), np.nan)
    if obs["prompt"].startswith("sleep"):
      time.sleep(float(obs["prompt"].split()[1]))
    return chunk(obs["state"], obs["image"]["wrist"])

  return policies.load_policy("callable", fn=infer, observation_spec=OBS_SPEC, action_dim=D,
                              chunk_length=H, control_hz=50.0, model_id="tiny-mlp"), chunk


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
}
EXPECTED_TEXT = {
    "not_msgpack": "not valid msgpack", "truncated": "not valid msgpack", "not_a_dict": "must be a dict",
    "text_frame": "text frame", "missing_field": "missing field 'image'", "wrong_shape": "shape (6,)",
    "wrong_dtype": "dtype float32, expected uint8", "nan": "non-finite", "inf": "non-finite",
    "object_dtype": "refused", "bad_payload_len": "3 bytes", "unknown_version": "unknown protocol version 99",
    "string_for_array": "'state' must be an array", "policy_raises": "policy exploded on purpose",
    "policy_nan": "non-finite actions",
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
