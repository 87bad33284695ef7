"""Robot-side client of the policy server (synchronous; one connection, one request at a time).

    client = PolicyClient("localhost", 8000)
    client.metadata["chunk_length"]            # specs advertised by the server
    reply = client.infer({"state": q, "image": {"wrist": img_uint8}})
    reply["actions"]                           # float32[H, D]

A refused request raises `ServerError` with the server's one-line message (``"ProtocolError:
field 'state': ..."`` or ``"InternalError: ..."``). For a server started with an API key, pass
``api_key=...``: it is sent as the handshake header ``Authorization: Api-Key <key>`` (the same
header as openpi-client's ``api_key``); a missing or wrong key raises `AuthenticationError` at once
(it is not retried).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from vlajax.bridge import protocol


class ServerError(RuntimeError):
  """The server refused a request; the message is the server's error text."""


class ServerUnavailable(ConnectionError):
  """The connection to the server is closed or cannot be opened."""


class AuthenticationError(ServerError):
  """The server refused the connection: no API key, or a wrong one (HTTP 401 / 403)."""


class PolicyClient:
  """Connects, reads the metadata frame, then sends observations and returns action dicts.

  Args:
    host, port: server address.
    connect_timeout: seconds to keep retrying the initial connection.
    request_timeout: seconds to wait for one reply before raising `TimeoutError`.
    send_version: add the reserved protocol-version key to every request (our server checks it).
    api_key: sent as ``Authorization: Api-Key <key>`` on the handshake (None: no header).
  """

  def __init__(self, host: str = "localhost", port: int = 8000, *, connect_timeout: float = 30.0,
               request_timeout: float | None = 30.0, send_version: bool = True,
               max_reply_bytes: int | None = 256 * 2**20, api_key: str | None = None):
    self.uri = f"ws://{host}:{port}"
    self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
    self.connect_timeout = connect_timeout
    self.request_timeout = request_timeout
    self.send_version = send_version
    self.max_reply_bytes = max_reply_bytes
    self._lock = threading.Lock()
    self._ws = None
    self.metadata: dict = {}
    self._connect(connect_timeout)

  def _connect(self, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
      try:
        self._ws = connect(self.uri, compression=None, max_size=self.max_reply_bytes,
                           additional_headers=self._headers,
                           open_timeout=max(0.1, deadline - time.monotonic()))
        break
      except InvalidStatus as err:
        status = err.response.status_code
        if status in (401, 403):  # not transient: retrying would only hide it
          body = (err.response.body or b"").decode("utf-8", "replace").strip()[:300]
          given = "no API key was given" if self._headers is None else "the API key was refused"
          raise AuthenticationError(
              f"policy server at {self.uri} refused the connection (HTTP {status}): {given}"
              f"{'; server said: ' + body if body else ''}") from err
        if time.monotonic() >= deadline:
          raise ServerUnavailable(f"cannot connect to policy server at {self.uri}: {err}") from err
        time.sleep(0.2)
      except (OSError, InvalidHandshake, TimeoutError) as err:
        if time.monotonic() >= deadline:
          raise ServerUnavailable(f"cannot connect to policy server at {self.uri}: {err}") from err
        time.sleep(0.2)
    self.metadata = protocol.unpackb(self._ws.recv(timeout=timeout))
    version = self.metadata.get("protocol_version")
    if version is not None and version != protocol.PROTOCOL_VERSION:
      raise ServerError(f"server speaks protocol version {version}, client {protocol.PROTOCOL_VERSION}")

  @property
  def observation_spec(self) -> dict:
    return protocol.spec_from_wire(self.metadata.get("observation_spec", {}))

  def infer(self, observation: Mapping[str, Any]) -> dict:
    """Sends one observation and returns the server's reply dict.

    Raises `ServerError` (with the server's message) if the request was refused,
    `ServerUnavailable` if the connection is gone, `TimeoutError` if no reply came in time.
    """
    message = dict(observation)
    if self.send_version:
      message[protocol.VERSION_KEY] = protocol.PROTOCOL_VERSION
    frame = protocol.packb(message)
    with self._lock:
      if self._ws is None:  # dropped after a timeout: the late reply must not be misread
        self._connect(min(self.connect_timeout, 2.0))
      try:
        self._ws.send(frame)
        reply = self._ws.recv(timeout=self.request_timeout)
      except TimeoutError:
        self._ws.close()
        self._ws = None
        raise
      except ConnectionClosed as err:
        rcvd = err.rcvd
        detail = f" (code {rcvd.code}: {rcvd.reason})" if rcvd is not None else ""
        raise ServerUnavailable(f"connection to {self.uri} closed{detail}") from err
    if isinstance(reply, str):
      raise ServerError(reply)
    return protocol.unpackb(reply)

  def close(self) -> None:
    if self._ws is not None:
      self._ws.close()

  def __enter__(self) -> "PolicyClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
