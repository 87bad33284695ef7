"""`vlajax.core.atomic`: a writer SIGKILLed at random points (many trials) leaves the target whole.

The child process loads `vlajax/core/atomic.py` on its own (no JAX import: it starts in tens of ms)
and rewrites a 4 MB file in a loop, each version self-checking (its version byte repeated, then an
end marker). A control run with a plain chunked `open(..., "wb")` writer shows the harness does
catch half-written files.
"""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest

from vlajax.core import atomic

ATOMIC_PY = pathlib.Path(__file__).resolve().parents[1] / "vlajax" / "core" / "atomic.py"
SIZE = 4 << 20
END = b"\nEND\n"

CHILD = r"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
path, mode, size = sys.argv[2], sys.argv[3], int(sys.argv[4])
version = 1
while True:
  data = b"%08d\n" % version + bytes([version % 251]) * size + b"\nEND\n"
  if mode == "atomic":
    atomic.write_bytes(path, data)
  else:                                 # the control: what a plain write leaves when killed
    with open(path, "wb") as f:
      for i in range(0, len(data), 1 << 16):
        f.write(data[i:i + (1 << 16)])
        f.flush()
  if version == 1:
    print("first", flush=True)
  version += 1
"""


def _content(version: int) -> bytes:
  return b"%08d\n" % version + bytes([version % 251]) * SIZE + END


def _whole(data: bytes) -> bool:
  """Whether `data` is one complete version."""
  if len(data) != 9 + SIZE + len(END) or not data.endswith(END):
    return False
  return data == _content(int(data[:8]))


def _kill_trials(tmp_path, mode: str, trials: int, seed: int) -> list[bool]:
  """Per trial: whether the target was whole (or absent) after the writer was SIGKILLed."""
  rng = random.Random(seed)
  results = []
  for trial in range(trials):
    target = tmp_path / f"{mode}_{trial}.bin"
    target.write_bytes(_content(0))                  # the old, complete content
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ATOMIC_PY), str(target), mode,
                              str(SIZE)], stdout=subprocess.PIPE)
    try:
      if trial % 2:                                  # odd trials: after a few complete writes
        assert child.stdout.readline() == b"first\n"
      time.sleep(rng.uniform(0.0, 0.08))
    finally:
      os.kill(child.pid, signal.SIGKILL)
      child.wait()
      child.stdout.close()
    results.append(not target.exists() or _whole(target.read_bytes()))
  return results


def test_killed_atomic_writer_never_leaves_a_partial_file(tmp_path):
  results = _kill_trials(tmp_path, "atomic", trials=24, seed=0)
  assert all(results), f"partial files in trials {[i for i, ok in enumerate(results) if not ok]}"


def test_control_plain_writer_is_caught_half_written(tmp_path):
  results = _kill_trials(tmp_path, "plain", trials=8, seed=1)
  assert not all(results)


def test_write_json_and_text_replace_whole_and_leave_no_temporary(tmp_path):
  path = tmp_path / "policy.json"
  atomic.write_json(path, {"a": 1}, indent=1)
  path.chmod(0o640)
  atomic.write_json(path, {"a": [1, 2]})
  assert json.loads(path.read_text()) == {"a": [1, 2]}
  assert oct(path.stat().st_mode & 0o777) == oct(0o640)          # permissions kept
  atomic.write_text(tmp_path / "report.md", "# report\n")
  assert (tmp_path / "report.md").read_text() == "# report\n"
  with pytest.raises(TypeError):                                  # not serializable: untouched
    atomic.write_json(path, {"a": object()})
  assert json.loads(path.read_text()) == {"a": [1, 2]}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "report.md"]
