"""Two real JAX processes (gloo) read the pipeline: global batches assembled from both hosts' rows."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import data_testlib as lib
from vlajax.data import loader as loader_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_build_global_batches_from_disjoint_shards(tmp_path):
  root = lib.oxe_root(("bridge", "taco_play"), episodes=8)
  stats = str(tmp_path / "stats")
  # Statistics once, before the workers (they then read the cache).
  loader_lib.DataLoader(lib.small_config(root, {"bridge": 1.0, "taco_play": 1.0}), stats_dir=stats)
  port = _free_port()
  outs = [tmp_path / f"p{i}.json" for i in range(2)]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "multihost_data.py"), str(i), "2",
                             str(port), root, stats, str(outs[i])], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  a, b = (json.loads(o.read_text()) for o in outs)
  episodes = [set(), set()]
  for host, result in enumerate((a, b)):
    for record in result["records"]:
      assert record["local_rows"] == 4 and len(record["instructions"]) == 4
      episodes[host].update(lib.origin(t.encode())[:2] for t in record["instructions"])
  for ra, rb in zip(a["records"], b["records"]):
    # The global array holds both hosts' rows: its sum (one jitted reduction) = sum of local parts.
    assert abs(ra["global_sum"] - rb["global_sum"]) < 1e-6
    assert abs(ra["global_sum"] - (ra["local_sum"] + rb["local_sum"])) < 1e-3
  assert not episodes[0] & episodes[1]            # each host reads its own episodes
  assert a["state"]["process_index"] == 0 and b["state"]["process_index"] == 1
