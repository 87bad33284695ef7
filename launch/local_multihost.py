"""Starts N local processes of an experiment under `jax.distributed`, standing in for N hosts.

  python launch/local_multihost.py --num_processes=2 --devices_per_process=2 -- \
      -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:smoke

Each process gets `--config.distributed.{coordinator_address,num_processes,process_id}` appended and
`XLA_FLAGS=--xla_force_host_platform_device_count=<devices_per_process>` (CPU); the exit status is
the first non-zero one. On a cluster, pass the same three flags per host (e.g. from SLURM's
`$SLURM_PROCID` / `$SLURM_NTASKS` and the first node's address).
"""
import argparse
import os
import socket
import subprocess
import sys


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=2)
  parser.add_argument("command", nargs=argparse.REMAINDER, help="python arguments after --")
  args = parser.parse_args()
  command = [c for c in args.command if c != "--"]
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices_per_process}",
             JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  procs = [subprocess.Popen([sys.executable, *command,
                             f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                             f"--config.distributed.num_processes={args.num_processes}",
                             f"--config.distributed.process_id={i}"], env=env)
           for i in range(args.num_processes)]
  codes = [p.wait() for p in procs]
  return next((c for c in codes if c), 0)


if __name__ == "__main__":
  sys.exit(main())
