"""Worker for test_data_multihost: one of N local processes reading the data pipeline together.

  python tests/multihost_data.py <process_id> <num_processes> <port> <data_root> <stats_dir> <out.json>

Each process has 2 CPU devices; batches are global arrays over the mesh of all processes' devices.
Writes, per batch: this host's instructions, the sum of its local action rows, and the global sum
computed by a jitted reduction over the global array.
"""
import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from vlajax.core import mesh as mesh_lib  # pylint: disable=wrong-import-position

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
  process_id, num_processes, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
  data_root, stats_dir, out = sys.argv[4], sys.argv[5], sys.argv[6]
  mesh_lib.initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id)
  import data_testlib as lib  # pylint: disable=import-outside-toplevel
  from vlajax.data import loader as loader_lib  # pylint: disable=import-outside-toplevel

  assert jax.process_count() == num_processes and jax.device_count() == 2 * num_processes
  cfg = lib.small_config(data_root, {"bridge": 1.0, "taco_play": 1.0}, image_size=(4, 4),
                         augment=False)
  loader = loader_lib.DataLoader(cfg, mesh_lib.make_mesh({"data": -1}), stats_dir=stats_dir)
  total = jax.jit(lambda a: a.sum())
  records = []
  for _ in range(3):
    batch = next(loader)
    action = batch["action"]
    assert action.shape[0] == cfg.global_batch_size, action.shape
    local = sum(float(np.asarray(s.data, np.float64).sum()) for s in action.addressable_shards)
    records.append({"instructions": [t.decode() for t in batch["instruction"]],
                    "local_rows": sum(s.data.shape[0] for s in action.addressable_shards),
                    "local_sum": local, "global_sum": float(total(action))})
  with open(out, "w") as f:
    json.dump({"records": records, "state": loader.state()}, f)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
