"""Policy loading behind the server: a real PPO checkpoint, and the `serve_policy` entry point."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import jax
import numpy as np
import pytest

from experiments import serve_policy
from experiments.configs import serve_policy as serve_configs
from vlajax.bridge import policies
from vlajax.bridge.client import AuthenticationError, PolicyClient, ServerError
from vlajax.bridge.server import PolicyServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
  """A PPO run directory with an orbax checkpoint of freshly initialised cart-pole networks."""
  from experiments.configs import ppo_locomotion  # pylint: disable=import-outside-toplevel
  from vlajax import envs  # pylint: disable=import-outside-toplevel
  from vlajax.core.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  from vlajax.rl import ppo, running_stats  # pylint: disable=import-outside-toplevel

  config = ppo_locomotion.get_config("smoke")
  env = envs.make(config.env_name, config=config.env)
  sizes = env.observation_size
  params = ppo.Networks(config.ppo, env.action_size).init(jax.random.PRNGKey(0), sizes)
  stats = running_stats.init(sizes)
  stats = jax.tree.map(lambda x: x + 0.5 if x.dtype.kind == "f" else x, stats)  # non-trivial normalizer
  run_dir = tmp_path_factory.mktemp("ppo_run")
  checkpointer = Checkpointer(run_dir / "checkpoints", max_to_keep=1)
  checkpointer.save(3, {"params": params, "obs_stats": stats}, {"config": config.to_dict()})
  checkpointer.wait()
  checkpointer.close()
  return run_dir, sizes, env.action_size


def test_ppo_checkpoint_served_over_the_wire(ppo_run):
  from vlajax.rl import ppo  # pylint: disable=import-outside-toplevel

  run_dir, sizes, action_size = ppo_run
  served = policies.load_policy("ppo", path=str(run_dir))
  meta = served.metadata()
  assert meta["chunk_length"] == 1 and meta["control_hz"] == pytest.approx(50.0)
  assert meta["observation_spec"] == {"state": {"shape": list(sizes["state"]), "dtype": "float32"}}
  assert meta["action_spec"]["actions"]["shape"] == [1, action_size]
  # The metadata goes to every client: the run's name, never its server path.
  assert meta["model_id"].endswith(f":{run_dir.name}") and str(run_dir.parent) not in str(meta)
  assert policies.load_policy("ppo", path=str(run_dir / "checkpoints")).metadata()["model_id"] == meta["model_id"]
  direct, _ = ppo.load_policy(run_dir)
  rng = np.random.default_rng(0)
  with PolicyServer(served, "127.0.0.1", 0) as server, PolicyClient("127.0.0.1", server.port) as client:
    for _ in range(3):
      obs = {"state": rng.normal(size=sizes["state"]).astype(np.float32)}
      reply = client.infer(obs)
      np.testing.assert_allclose(reply["actions"][0], np.asarray(direct(obs)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ServerError, match="missing field 'state'"):
      client.infer({"privileged_state": np.zeros(sizes["privileged_state"])})


def test_policy_kwargs_from_config():
  config = serve_configs.get_config("ppo")
  with pytest.raises(ValueError, match="config.policy.path is required"):
    serve_policy.policy_kwargs(config.policy)
  config.policy.path = "/runs/x"
  assert serve_policy.policy_kwargs(config.policy) == {"path": "/runs/x"}
  config.policy.step = 7
  assert serve_policy.policy_kwargs(config.policy)["step"] == 7
  with pytest.raises(KeyError, match="unknown serve_policy config"):
    serve_configs.get_config("nope")


def _free_port():
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def test_serve_policy_entry_point():
  """The CLI: default (loopback) host, an API key from the command line, one-line errors."""
  port = _free_port()
  cmd = [sys.executable, "-m", "experiments.serve_policy",
         "--config=experiments/configs/serve_policy.py:demo", f"--config.server.port={port}",
         "--config.server.api_key=entry-point-key"]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + 120
    while True:
      try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
          assert resp.status == 200
          break
      except OSError:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "server did not come up"
        time.sleep(0.5)
    with pytest.raises(AuthenticationError, match="HTTP 401"):
      PolicyClient("127.0.0.1", port)
    with PolicyClient("127.0.0.1", port, api_key="entry-point-key") as client:
      assert client.metadata["model_id"] == "demo-sine" and client.metadata["chunk_length"] == 8
      state = np.linspace(-1, 1, 6).astype(np.float32)
      actions = client.infer({"state": state})["actions"]
      np.testing.assert_allclose(actions, np.asarray(serve_configs.demo_policy({"state": state})), atol=1e-6)
      with pytest.raises(ServerError, match=r"^ProtocolError: field 'state' has shape"):
        client.infer({"state": np.zeros(3)})
      assert client.infer({"state": state})["actions"].shape == (8, 6)
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  output = proc.stdout.read()
  assert f"serving on ws://127.0.0.1:{port}" in output and "API key required" in output
  assert "entry-point-key" not in output
