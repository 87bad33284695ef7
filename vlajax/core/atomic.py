"""Atomic file writes: whoever reads the file, or a run restarted after `kill -9`, finds the old
content or the new, whole; never a half-written file.

  atomic.write_json(run_dir / "policy.json", policy, indent=1)
  atomic.write_text(out / "report.md", text)

The data goes to a temporary file in the target's directory (same filesystem, so the rename is
atomic), is flushed and fsync'ed, and `os.replace`s the target (keeping an existing target's
permission bits); the directory is then fsync'ed so the rename itself is durable. A writer killed
mid-way leaves the target as it was, plus at worst a `.<name>.tmp-<pid>-<random>` file beside it.
Only the standard library is imported (a killed-writer test loads this file on its own).
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import stat
from typing import Any


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
  """Atomically replaces `path` (its directory must exist) with `data`; returns the path."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # 0o666 & ~umask, as open()
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    with contextlib.suppress(FileNotFoundError):
      os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise
  _fsync_directory(path.parent)
  return path


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> pathlib.Path:
  """Atomically replaces `path` with `text`."""
  return write_bytes(path, text.encode(encoding))


def write_json(path: str | os.PathLike, value: Any, **dumps_kwargs) -> pathlib.Path:
  """Atomically replaces `path` with `json.dumps(value, **dumps_kwargs)` and a newline.

  The value is serialized before the file is touched: a value that cannot be serialized raises
  and leaves `path` as it was.
  """
  return write_text(path, json.dumps(value, **dumps_kwargs) + "\n")


def _fsync_directory(directory: pathlib.Path) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:                 # platforms without directory handles (Windows)
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)
