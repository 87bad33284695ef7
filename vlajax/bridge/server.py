"""WebSocket policy server (openpi-compatible wire format, see `vlajax.bridge.protocol`).

* ``GET /healthz`` answers 200 ``OK`` (always, API key or not); any other plain HTTP request gets
  426 from websockets.
* On connect the server sends the metadata frame, then answers each observation frame with
  ``{"actions": float32[H, D], "server_timing": {"infer_ms", "prev_total_ms"?}, "policy_timing"}``.
* Inference runs in a thread pool, so a slow request never blocks the event loop or other clients.
* Errors are answered with one text line and the connection stays open:

  - ``"ProtocolError: <message>"`` for a bad request (not msgpack, not a dict, missing field,
    ragged or non-numeric list, wrong shape/dtype, non-finite value, unknown protocol version);
    the message names the field by its dotted path (``image.wrist``);
  - ``"InternalError: ..."`` when the policy (or the server) fails on a request: only the
    exception's type and a fixed sentence, or the server's own check of the policy output
    ("the policy returned non-finite actions").

  No traceback, exception text of a third-party library or server path ever goes to a client
  (path-like words are also redacted from the line, see `client_error_line`); the full traceback
  goes to this module's logger. Frames above ``max_frame_bytes`` are refused by the WebSocket
  layer before they are buffered: the connection is closed with code 1009 and a reason that
  states the limit; the server goes on serving other and new connections.
* Binding: ``host`` defaults to ``127.0.0.1`` (this machine only). To serve robots on other
  machines pass ``host="0.0.0.0"`` (all interfaces) or one interface's address, and set an
  ``api_key`` on any network you do not fully trust.
* Optional API key (``api_key``, off by default): the handshake must carry the header
  ``Authorization: Api-Key <key>`` (what openpi-client sends for its ``api_key``); otherwise it is
  refused with HTTP 401 before any frame is exchanged, and the refusal is logged. Keys are
  compared with `hmac.compare_digest`. The key travels in clear text over ``ws://``: across an
  untrusted network put the server behind TLS (a reverse proxy) or an SSH tunnel.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hmac
import http
import logging
import re
import threading
import time

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from vlajax.bridge import protocol
from vlajax.bridge.policies import ServedPolicy

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAME_BYTES = 50 * 2**20  # 50 MiB, the limit proposed upstream
DEFAULT_HOST = "127.0.0.1"  # loopback: expose with host="0.0.0.0" (or an interface address)
API_KEY_SCHEME = "Api-Key"  # openpi-client: ``Authorization: Api-Key <key>``
_MAX_ERROR_CHARS = 500
# A word with a slash or backslash in it (a file path, relative or absolute, POSIX or Windows).
_PATH_RE = re.compile(r"""[^\s'"`()\[\]{}<>,;]*[/\\][^\s'"`()\[\]{}<>,;]*""")


class _PolicyFailed(Exception):
  """Raised from the policy's `infer` (the cause is the policy's own exception)."""


def client_error_line(err: BaseException) -> str:
  """The one line a client gets for `err`: ``"<Kind>: <message>"``, never a traceback or a path.

  A `protocol.ProtocolError` (a bad request) keeps its message, which this package writes; any
  other exception gives only its type and a fixed sentence (its message may hold paths, values or
  library internals). The line is cut to one line of at most 500 characters, with path-like
  words replaced by ``<path>`` (a client's own input echoed back included).
  """
  if isinstance(err, _PolicyFailed):
    cause = err.__cause__
    if isinstance(cause, protocol.ProtocolError):  # `ServedPolicy.infer`'s output checks
      line = f"InternalError: {cause} (see the server log)"
    else:
      line = (f"InternalError: the policy failed on this request ({type(cause).__name__}; "
              "see the server log)")
  elif isinstance(err, protocol.ProtocolError):
    line = f"ProtocolError: {err}"
  else:
    line = f"InternalError: the server failed on this request ({type(err).__name__}; see the server log)"
  line = _PATH_RE.sub("<path>", " ".join(line.split()))
  return line if len(line) <= _MAX_ERROR_CHARS else line[:_MAX_ERROR_CHARS - 3] + "..."


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

  def __init__(self, policy: ServedPolicy, host: str = DEFAULT_HOST, port: int = 8000, *,
               max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, workers: int = 4,
               check_finite: bool = True, log_every: int = 0, api_key: str | None = None):
    self.policy = policy
    self.host = host
    if api_key and not api_key.strip():
      raise ValueError("api_key is blank; pass None (or '') to serve without a key")
    self._api_key = api_key.strip().encode("utf-8") if api_key else None
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
    self.bound_addresses: list[tuple] = []  # (host, port, ...) of each listening socket, once started

  # --- request handling ----------------------------------------------------------------------

  def _decode_request(self, frame) -> dict:
    if isinstance(frame, str):
      raise protocol.ProtocolError("expected a binary msgpack frame, got a text frame")
    message = protocol.unpackb(frame)
    if not isinstance(message, dict):
      raise protocol.ProtocolError(f"observation must be a dict, got {type(message).__name__}")
    version = message.pop(protocol.VERSION_KEY, protocol.PROTOCOL_VERSION)
    if (not isinstance(version, (int, np.integer)) or isinstance(version, (bool, np.bool_))
        or version != protocol.PROTOCOL_VERSION):
      shown = repr(version) if len(repr(version)) <= 40 else repr(version)[:37] + "..."
      raise protocol.ProtocolError(
          f"unknown protocol version {shown}; this server speaks version {protocol.PROTOCOL_VERSION}")
    return protocol.conform(message, self.policy.observation_spec, check_finite=self.check_finite)

  def _handle_frame(self, frame) -> dict:
    """Runs in the thread pool: decode and validate (`ProtocolError`), then infer."""
    observation = self._decode_request(frame)
    try:
      return self.policy.infer(observation)
    except Exception as err:  # pylint: disable=broad-except
      raise _PolicyFailed() from err

  def _log_error(self, err: BaseException, peer) -> None:
    """The server side of an error reply: the full traceback for a server fault."""
    if isinstance(err, _PolicyFailed):
      log.error("policy %s failed on a request from %s", self.policy.model_id, peer,
                exc_info=err.__cause__)
    elif isinstance(err, protocol.ProtocolError):
      log.warning("bad request from %s: %s", peer, err, exc_info=log.isEnabledFor(logging.DEBUG) and err)
    else:
      log.error("server error on a request from %s", peer, exc_info=err)

  async def _handler(self, ws: ServerConnection) -> None:
    self.stats.connections += 1
    loop = asyncio.get_running_loop()
    try:
      await ws.send(self._metadata_frame)
    except ConnectionClosed:
      return
    prev_total_ms = None
    while True:
      try:
        frame = await ws.recv()
      except ConnectionClosed:
        return
      start = time.perf_counter()
      try:
        reply = await loop.run_in_executor(self._pool, self._handle_frame, frame)
        infer_ms = (time.perf_counter() - start) * 1e3
        reply["server_timing"] = {"infer_ms": infer_ms}
        if prev_total_ms is not None:
          reply["server_timing"]["prev_total_ms"] = prev_total_ms
        payload = protocol.packb(reply)
      except Exception as err:  # pylint: disable=broad-except
        self.stats.errors += 1
        self._log_error(err, ws.remote_address)
        try:
          await ws.send(client_error_line(err))  # text frame: openpi clients raise on it
        except ConnectionClosed:
          return
        continue
      self.stats.requests += 1  # counted before the reply leaves, so a client never outruns it
      try:
        await ws.send(payload)
      except ConnectionClosed:
        return
      prev_total_ms = (time.perf_counter() - start) * 1e3
      self.stats.latencies_ms.append(prev_total_ms)
      if self.log_every and self.stats.requests % self.log_every == 0:
        log.info("served %d requests: %s", self.stats.requests, self.stats.summary())

  def _authorized(self, request) -> str | None:
    """None if `request` carries the API key (or none is required), else why it is refused."""
    if self._api_key is None:
      return None
    values = request.headers.get_all("Authorization")
    if not values:
      return "no Authorization header"
    if len(values) > 1:
      return "several Authorization headers"
    scheme, _, key = values[0].strip().partition(" ")
    if scheme.lower() != API_KEY_SCHEME.lower():
      return f"Authorization scheme is not {API_KEY_SCHEME}"
    if not hmac.compare_digest(key.strip().encode("utf-8", "surrogateescape"), self._api_key):
      return "wrong API key"
    return None

  def _process_request(self, connection: ServerConnection, request):
    """websockets' handshake hook: ``/healthz`` (open to all), then the API key check."""
    if request.path == "/healthz":
      return connection.respond(http.HTTPStatus.OK, "OK\n")
    refusal = self._authorized(request)
    if refusal is None:
      return None
    log.warning("refused connection from %s to %s: %s", connection.remote_address, request.path, refusal)
    response = connection.respond(
        http.HTTPStatus.UNAUTHORIZED,
        f"401 Unauthorized: this policy server needs the header "
        f"'Authorization: {API_KEY_SCHEME} <key>' ({refusal})\n")
    response.headers["WWW-Authenticate"] = API_KEY_SCHEME
    return response

  # --- lifecycle -----------------------------------------------------------------------------

  async def _serve(self) -> None:
    self._stop = asyncio.Event()
    async with serve(self._handler, self.host, self.port, compression=None,
                     max_size=self.max_frame_bytes, process_request=self._process_request,
                     ping_interval=None) as server:
      sockets = list(server.sockets)
      self.bound_addresses = [sock.getsockname() for sock in sockets]
      if sockets:
        self.port = sockets[0].getsockname()[1]  # resolves port=0
      self._loop = asyncio.get_running_loop()
      log.info("policy server %s listening on ws://%s:%d (API key %s)", self.policy.model_id,
               self.host, self.port, "required" if self._api_key else "off")
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
