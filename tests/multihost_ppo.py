"""Worker for test_rl_multihost: one of N local processes training PPO together under jax.distributed.

  python tests/multihost_ppo.py <process_id> <num_processes> <port> <out.npz>

Each process has 2 CPU devices; the mesh spans all processes. Writes the final params and the loss
of every iteration.
"""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from vlajax.core import mesh as mesh_lib  # pylint: disable=wrong-import-position


def main():
  process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
  mesh_lib.initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id)
  from experiments.configs import ppo_locomotion as configs  # pylint: disable=import-outside-toplevel
  from vlajax import envs  # pylint: disable=import-outside-toplevel
  from vlajax.rl import ppo  # pylint: disable=import-outside-toplevel

  assert jax.process_count() == num_processes and jax.device_count() == 2 * num_processes
  config = configs.get_config("smoke")
  env = envs.make(config.env_name, config=config.env)
  learner = ppo.Learner(env, config.ppo, mesh_lib.make_mesh({"data": -1}))
  # Compile everything first, then line the processes up: gloo's first collective waits only ~30 s.
  key = jax.random.PRNGKey(3)
  init = learner.init.lower(key).compile()
  mesh_lib.barrier("init_compiled")
  state = init(key)
  print("initialized", flush=True)
  iteration = learner.iteration.lower(state).compile()
  mesh_lib.barrier("iteration_compiled")
  losses = []
  for _ in range(3):
    state, metrics = iteration(state)
    print("iteration done", flush=True)
    losses.append(float(jax.device_get(metrics["loss/total"])))
  leaves = [np.asarray(jax.device_get(x)) for x in jax.tree.leaves(state.params)]
  np.savez(out, losses=np.asarray(losses), *leaves)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
