"""WebSocket policy server (openpi-compatible wire format, see `vlajax.bridge.protocol`).

* ``GET /healthz`` answers 200 ``OK``; any other plain HTTP request gets 426 from websockets.
* On connect the server sends the metadata frame, then answers each observation frame with
  ``{"actions": float32[H, D], "server_timing": {"infer_ms", "prev_total_ms"?}, "policy_timing"}``.
* Inference runs in a thread pool, so a slow request never blocks the event loop or other clients.
* A bad request (not msgpack, not a dict, missing field, wrong shape/dtype, non-finite value,
  unknown protocol version, a policy failure) is answered with a text frame ``"<Kind>: <message>"``
  and the connection stays open. Frames above ``max_frame_bytes`` are refused by the WebSocket layer
  before they are buffered: the connection is closed with code 1009 and a reason that states the
  limit; the server goes on serving other and new connections.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import http
import logging
import threading
import time
import traceback

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from vlajax.bridge import protocol
from vlajax.bridge.policies import ServedPolicy

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAME_BYTES = 50 * 2**20  # 50 MiB, the limit proposed upstream


@dataclasses.dataclass
class ServerStats:
  """Counters and per-request latencies (milliseconds) since start."""

  requests: int = 0
  errors: int = 0
  connections: int = 0
  latencies_ms: collections.deque = dataclasses.field(
      default_factory=lambda: collections.deque(maxlen=100_000))  # the most recent requests

  def summary(self) -> dict:
    lat = np.asarray(self.latencies_ms or [np.nan])
    return {"requests": self.requests, "errors": self.errors, "connections": self.connections,
            "latency_ms_p50": float(np.median(lat)), "latency_ms_p99": float(np.percentile(lat, 99))}


class PolicyServer:
  """Serves one `ServedPolicy`. `start()` runs it in a background thread; `serve_forever()` blocks."""

  def __init__(self, policy: ServedPolicy, host: str = "0.0.0.0", port: int = 8000, *,
               max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, workers: int = 4,
               check_finite: bool = True, log_every: int = 0):
    self.policy = policy
    self.host = host
    self.port = port
    self.max_frame_bytes = int(max_frame_bytes)
    self.check_finite = check_finite
    self.log_every = log_every
    self.stats = ServerStats()
    self._metadata_frame = protocol.packb(policy.metadata())
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer")
    self._loop: asyncio.AbstractEventLoop | None = None
    self._stop: asyncio.Event | None = None
    self._thread: threading.Thread | None = None
    self._ready = threading.Event()
    self._error: BaseException | None = None

  # --- request handling ----------------------------------------------------------------------

  def _decode_request(self, frame) -> dict:
    if isinstance(frame, str):
      raise protocol.ProtocolError("expected a binary msgpack frame, got a text frame")
    message = protocol.unpackb(frame)
    if not isinstance(message, dict):
      raise protocol.ProtocolError(f"observation must be a dict, got {type(message).__name__}")
    version = message.pop(protocol.VERSION_KEY, protocol.PROTOCOL_VERSION)
    if version != protocol.PROTOCOL_VERSION:
      raise protocol.ProtocolError(
          f"unknown protocol version {version!r}; this server speaks version {protocol.PROTOCOL_VERSION}")
    return protocol.conform(message, self.policy.observation_spec, check_finite=self.check_finite)

  def _handle_frame(self, frame) -> dict:
    """Runs in the thread pool: decode, validate, infer."""
    observation = self._decode_request(frame)
    return self.policy.infer(observation)

  async def _handler(self, ws: ServerConnection) -> None:
    self.stats.connections += 1
    loop = asyncio.get_running_loop()
    await ws.send(self._metadata_frame)
    prev_total_ms = None
    while True:
      try:
        frame = await ws.recv()
      except ConnectionClosed:
        return
      start = time.perf_counter()
      try:
        reply = await loop.run_in_executor(self._pool, self._handle_frame, frame)
      except Exception as err:  # pylint: disable=broad-except
        self.stats.errors += 1
        kind = "ProtocolError" if isinstance(err, protocol.ProtocolError) else type(err).__name__
        message = f"{kind}: {err}"
        if not isinstance(err, protocol.ProtocolError):
          message += "\n" + traceback.format_exc()
          log.exception("policy failed on a request")
        else:
          log.warning("bad request from %s: %s", ws.remote_address, err)
        try:
          await ws.send(message)  # text frame: openpi clients raise on it
        except ConnectionClosed:
          return
        continue
      infer_ms = (time.perf_counter() - start) * 1e3
      reply["server_timing"] = {"infer_ms": infer_ms}
      if prev_total_ms is not None:
        reply["server_timing"]["prev_total_ms"] = prev_total_ms
      self.stats.requests += 1  # counted before the reply leaves, so a client never outruns it
      try:
        await ws.send(protocol.packb(reply))
      except ConnectionClosed:
        return
      prev_total_ms = (time.perf_counter() - start) * 1e3
      self.stats.latencies_ms.append(prev_total_ms)
      if self.log_every and self.stats.requests % self.log_every == 0:
        log.info("served %d requests: %s", self.stats.requests, self.stats.summary())

  @staticmethod
  def _health(connection: ServerConnection, request):
    if request.path == "/healthz":
      return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None

  # --- lifecycle -----------------------------------------------------------------------------

  async def _serve(self) -> None:
    self._stop = asyncio.Event()
    async with serve(self._handler, self.host, self.port, compression=None,
                     max_size=self.max_frame_bytes, process_request=self._health,
                     ping_interval=None) as server:
      sockets = list(server.sockets)
      if sockets:
        self.port = sockets[0].getsockname()[1]  # resolves port=0
      self._loop = asyncio.get_running_loop()
      log.info("policy server %s listening on ws://%s:%d", self.policy.model_id, self.host, self.port)
      self._ready.set()
      await self._stop.wait()

  def serve_forever(self) -> None:
    asyncio.run(self._serve())

  def start(self, timeout: float = 30.0) -> "PolicyServer":
    """Starts serving in a daemon thread; returns once the port is bound."""
    def run():
      try:
        asyncio.run(self._serve())
      except BaseException as err:  # pylint: disable=broad-except
        self._error = err
        self._ready.set()

    self._thread = threading.Thread(target=run, name="policy-server", daemon=True)
    self._thread.start()
    if not self._ready.wait(timeout):
      raise TimeoutError(f"policy server did not start within {timeout}s")
    if self._error is not None:
      raise RuntimeError(f"policy server failed to start: {self._error}") from self._error
    return self

  def stop(self, timeout: float = 10.0) -> None:
    """Closes the listening socket and all connections (clients see the connection close)."""
    if self._loop is not None and self._stop is not None and not self._loop.is_closed():
      try:
        self._loop.call_soon_threadsafe(self._stop.set)
      except RuntimeError:  # the loop closed in between: already stopped
        pass
    if self._thread is not None:
      self._thread.join(timeout)
      self._thread = None
    self._pool.shutdown(wait=False, cancel_futures=True)

  def __enter__(self) -> "PolicyServer":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()
