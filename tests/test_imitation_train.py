"""The imitation loop (`vlajax.imitation`, `experiments.train_policy`) on a small demo dataset.

The dataset is written in the demo engine's layout (`vlajax.imitation.collect`) without rendering:
images are deterministic noise, the action a fixed function of the proprioception, so a head that
learns shows it in its loss. A run killed with SIGKILL resumes to the same parameters, bit for
bit, as an uninterrupted run.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import train_policy as train_config
from vlajax.core import mesh as mesh_lib
from vlajax.core.checkpoint import Checkpointer
from vlajax.data import writer
from vlajax.imitation import collect
from vlajax.imitation import batch as batch_lib
from vlajax.imitation import policy as policy_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
NAME = "sim_imitation_test"


def _episode(k: int, length: int, rng) -> dict:
  proprio = rng.normal(size=(length, 18)).astype(np.float32)
  action = np.concatenate([np.tanh(proprio[:, :6]), np.where(proprio[:, 6:7] > 0, 1.0, -1.0)],
                          axis=1).astype(np.float32)
  images = {f"image_{c}": rng.integers(0, 255, (length, 32, 32, 3), dtype=np.uint8)
            for c in ("primary", "wrist")}
  steps = {"observation": {**images, "proprio": proprio, "state": proprio},
           "action": action, "language_instruction": "move the gripper to the green marker"}
  meta = {"length": np.int64(length), "success": np.bool_(True), "episode_index": np.int64(k)}
  return {"steps": steps, "episode_metadata": meta}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("demos")
  rng = np.random.default_rng(0)
  train = [_episode(k, 20 + k, rng) for k in range(6)]
  val = [_episode(9, 20, rng)]
  directory = writer.write_rlds(str(root), NAME, {"train": train, "val": val})
  info = {"name": NAME, "env_name": "arm_reach", "action_space": "ee_delta", "action_dim": 7,
          "proprio_dim": 18, "cameras": ["primary", "wrist"], "train_episodes": 6,
          "frames": sum(20 + k for k in range(6))}
  with open(os.path.join(directory, collect.INFO_FILE), "w", encoding="utf-8") as f:
    json.dump(info, f)
  return directory


def _config(dataset_dir, workdir, steps=40, **train):
  config = train_config.get_config("smoke")
  config.data.dataset_dir = dataset_dir
  config.workdir = str(workdir)
  config.train.steps = steps
  config.optim.decay_steps = steps
  for key, value in train.items():
    config.train[key] = value
  return config


def _params(run_dir, step=None):
  ckpt = Checkpointer(pathlib.Path(run_dir) / "checkpoints")
  try:
    saved = ckpt.metadata(step)
    policy, info = policy_lib.load_policy(run_dir, step, use_ema=False)
    del policy, info
    spec = batch_lib.BatchSpec(4, 7, 18, ("image_primary", "image_wrist"), 1)
    model = policy_lib.make_model("regression", spec, {"loss": "l1", "augment": False})
    example = policy_lib.example_batch(spec, 1, 32)
    target = model.init(jax.random.PRNGKey(0), example["obs"], example["actions"],
                        jax.random.PRNGKey(0))
    return saved["step"], ckpt.restore({"params": target}, step, partial=True)["params"]
  finally:
    ckpt.close()


def test_loop_learns_and_writes_a_loadable_policy(dataset_dir, tmp_path):
  config = _config(dataset_dir, tmp_path / "run", steps=120, eval_every=60, checkpoint_every=60)
  result = policy_lib.train(config, tmp_path / "run", mesh_lib.make_mesh({"data": -1}))
  losses = [loss for _, loss in result["losses"]]
  assert losses[-1] < 0.7 * losses[0], losses
  assert np.isfinite(result["eval"]["eval_loss"])
  saved = policy_lib.read_policy_file(tmp_path / "run")
  assert saved["spec"]["action_horizon"] == 4 and saved["dataset"]["env_name"] == "arm_reach"
  policy, info = policy_lib.load_policy(tmp_path / "run")
  assert info["action_horizon"] == 4 and info["cameras"] == ("primary", "wrist")
  rng = np.random.default_rng(1)
  obs = {"proprio": rng.normal(size=(3, 18)).astype(np.float32),
         "image_primary": np.zeros((3, 32, 32, 3), np.uint8),
         "image_wrist": np.zeros((3, 32, 32, 3), np.uint8)}
  chunk = np.asarray(policy(obs, jax.random.PRNGKey(0)))
  assert chunk.shape == (3, 4, 7) and chunk.dtype == np.float32
  assert set(np.unique(np.sign(chunk[..., 6]))) <= {-1.0, 1.0, 0.0}
  assert np.all(np.abs(chunk[..., 6]) <= 1.0)
  # Actions come back in the env's units: the arm part tracks tanh(proprio) (same sign mostly).
  agree = np.mean(np.sign(chunk[:, 0, :6]) == np.sign(np.tanh(obs["proprio"][:, :6])))
  assert agree > 0.6, agree


def test_resume_after_sigkill_is_bit_exact(dataset_dir, tmp_path):
  steps, every = 200, 10
  straight = tmp_path / "straight"
  policy_lib.train(_config(dataset_dir, straight, steps, checkpoint_every=every, eval_every=0),
                   straight, mesh_lib.make_mesh({"data": -1}))
  killed = tmp_path / "killed"
  command = [sys.executable, "-m", "experiments.train_policy",
             "--config=experiments/configs/train_policy.py:smoke",
             f"--config.data.dataset_dir={dataset_dir}", f"--config.workdir={killed}",
             f"--config.train.steps={steps}", f"--config.optim.decay_steps={steps}",
             f"--config.train.checkpoint_every={every}", "--config.train.eval_every=0"]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while time.time() < deadline and process.poll() is None:
    if (killed / "checkpoints" / str(2 * every)).exists():
      break
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it could be killed"
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  step_killed, _ = _params(killed)
  assert step_killed < steps
  policy_lib.train(_config(dataset_dir, killed, steps, checkpoint_every=every, eval_every=0),
                   killed, mesh_lib.make_mesh({"data": -1}))
  step_a, params_a = _params(straight)
  step_b, params_b = _params(killed)
  assert step_a == step_b == steps
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _data_batch(horizon=4, dims=7):
  mask = np.zeros((2, horizon, 8), bool)
  mask[:, :, :dims] = True
  return {"observation": {"proprio": np.zeros((2, 1, 18), np.float32),
                          "proprio_mask": np.ones((2, 1, 18), bool),
                          "image_primary": np.zeros((2, 1, 8, 8, 3), np.uint8),
                          "image_wrist": np.zeros((2, 1, 8, 8, 3), np.uint8),
                          "image_mask": {"primary": np.ones((2, 1), bool),
                                         "wrist": np.zeros((2, 1), bool)}},
          "action": np.zeros((2, horizon, 8), np.float32), "action_pad_mask": mask}


def test_bad_input_names_the_problem(dataset_dir, tmp_path):
  spec = batch_lib.BatchSpec(4, 7, 18, ("image_primary",), 1)
  out = batch_lib.from_data(_data_batch(), spec, "demo")
  assert out["actions"].shape == (2, 4, 7) and out["obs"]["image_primary"].shape == (2, 8, 8, 3)
  with pytest.raises(ValueError, match=r"action_horizon 8 .*\(4 steps"):
    batch_lib.from_data(_data_batch(), batch_lib.BatchSpec(8, 7, 18, ("image_primary",)), "demo")
  with pytest.raises(ValueError, match="6 dimensions.*action_dim is 7"):
    batch_lib.from_data(_data_batch(dims=6), spec, "demo")
  with pytest.raises(KeyError, match="image_top"):
    batch_lib.from_data(_data_batch(), batch_lib.BatchSpec(4, 7, 18, ("image_top",)), "demo")
  with pytest.raises(KeyError, match="camera 'image_wrist'"):
    batch_lib.from_data(_data_batch(), batch_lib.BatchSpec(4, 7, 18, ("image_wrist",)), "demo")
  config = _config(dataset_dir, tmp_path / "bad")
  config.model.cameras = "primary,top"
  with pytest.raises(KeyError, match="'top'"):
    policy_lib.train(config, tmp_path / "bad", mesh_lib.make_mesh({"data": -1}))
  with pytest.raises(FileNotFoundError, match="policy.json"):
    policy_lib.load_policy(tmp_path / "nothing")


def test_ema_warms_up():
  from vlajax.imitation import train as train_lib  # pylint: disable=import-outside-toplevel
  assert float(train_lib.ema_decay_at(0.999, 0)) == pytest.approx(0.1)
  assert float(train_lib.ema_decay_at(0.999, 90)) == pytest.approx(0.91)
  assert float(train_lib.ema_decay_at(0.999, 100_000)) == pytest.approx(0.999)
  # After 2,000 steps the initial weights weigh prod(d_t) in the average: tiny, not 0.999^2000.
  weights = np.prod([float(train_lib.ema_decay_at(0.999, t)) for t in range(2000)])
  assert weights < 1e-3 < 0.999 ** 2000
