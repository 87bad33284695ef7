"""Worker for the VLA multi-host test: one of N local processes running ``train_vla`` together.

  python tests/multihost_vla.py <process_id> <num_processes> <port> <workdir> <out.npz>

Each process has 2 CPU devices; the (data=N, fsdp=2) mesh spans all processes (gloo collectives), so
the data axis crosses processes and FSDP shards live within each. Runs the smoke config for 4 steps
(checkpoints at 2 and 4, written together through orbax) and writes the per-step losses and the
final parameters, gathered to every host.
"""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from vlajax.core import mesh as mesh_lib  # pylint: disable=wrong-import-position


def main():
  process_id, num_processes, port, workdir, out = sys.argv[1:6]
  num_processes = int(num_processes)
  mesh_lib.initialize_distributed(f"127.0.0.1:{port}", num_processes, int(process_id))
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  from experiments import train_vla  # pylint: disable=import-outside-toplevel
  from experiments.configs import train_vla as configs  # pylint: disable=import-outside-toplevel

  assert jax.process_count() == num_processes and jax.device_count() == 2 * num_processes
  c = configs.get_config("smoke")
  c.train.update(dict(steps=4, log_every=1, eval_every=0, checkpoint_every=2))
  c.mesh.update(dict(data=num_processes, fsdp=2, num_devices=-1))
  result = train_vla.train(c, workdir)
  print("trained", flush=True)
  mesh_lib.barrier("vla_trained")
  params = multihost_utils.process_allgather(result["state"].params, tiled=True)
  leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
  np.savez(out, losses=np.asarray([loss for _, loss in result["losses"]]), *leaves)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
