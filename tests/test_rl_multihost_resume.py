"""Multi-process training under jax.distributed, and exact resume after a killed run."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import ppo_locomotion as configs
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.core.checkpoint import Checkpointer
from vlajax.rl import loop, ppo

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def smoke():
  """The smoke learner on this process's 4 devices (compiled once for both tests)."""
  config = configs.get_config("smoke")
  env = envs.make(config.env_name, config=config.env)
  return ppo.Learner(env, config.ppo, mesh_lib.make_mesh({"data": -1})), config


def test_two_processes_train_together(tmp_path, smoke):
  port = _free_port()
  outs = [tmp_path / f"p{i}.npz" for i in range(2)]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "multihost_ppo.py"), str(i), "2",
                             str(port), str(outs[i])], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  a, b = (np.load(o) for o in outs)
  assert set(a.files) == set(b.files) and len(a.files) > 2
  for key in a.files:
    np.testing.assert_array_equal(a[key], b[key])  # identical params and losses on both hosts
  # And the same math as one process with 4 local devices.
  learner, _ = smoke
  state = learner.init(jax.random.PRNGKey(3))
  losses = []
  for _ in range(3):
    state, metrics = learner.iteration(state)
    losses.append(float(metrics["loss/total"]))
  np.testing.assert_allclose(a["losses"], losses, rtol=2e-4, atol=1e-5)


def test_killed_run_resumes_to_identical_params(tmp_path, smoke):
  killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
  num_iterations = 24
  cmd = [sys.executable, "-m", "experiments.ppo_locomotion",
         "--config=experiments/configs/ppo_locomotion.py:smoke",
         f"--config.workdir={killed_dir}", f"--config.ppo.num_iterations={num_iterations}",
         "--config.run.checkpoint_every=2", "--config.run.eval_every=0"]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  ckpt_dir = killed_dir / "checkpoints"
  deadline = time.time() + 400
  while time.time() < deadline and proc.poll() is None:
    if ckpt_dir.exists() and any(p.name.isdigit() and int(p.name) >= 4 for p in ckpt_dir.iterdir()):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "run ended before it could be killed: " + proc.stderr.read()[-2000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = Checkpointer(ckpt_dir).latest_step()
  assert killed_at is not None and 4 <= killed_at < num_iterations

  learner, config = smoke
  config = config.copy_and_resolve_references()
  config.run.update(dict(checkpoint_every=2, eval_every=0))
  resumed = loop.train(learner, config.run, killed_dir, num_iterations, stream=None)
  clean = loop.train(learner, config.run, clean_dir, num_iterations, stream=None)
  assert int(resumed.iteration) == int(clean.iteration) == num_iterations
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(clean.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(jax.tree.leaves(resumed.opt_state), jax.tree.leaves(clean.opt_state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
