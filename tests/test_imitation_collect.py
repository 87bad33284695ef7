"""The demo engine (`vlajax.imitation.collect`, `experiments.collect_demos`) end to end.

The entry point runs in a subprocess (it renders through EGL, which cannot share a process with
TensorFlow; see `collect.write`); this process reads the dataset back with tfds and `vlajax.data`,
and replays the recorded episodes in the env: the recorded states follow from the reset key and
the executed actions, and each label is the expert's clean action in the recorded state.
"""
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_testlib as lib
from vlajax import envs
from vlajax.imitation import collect
from vlajax.data import loader as loader_lib
from vlajax.envs.manipulation import experts
from vlajax.eval import closed_loop

REPO = pathlib.Path(__file__).resolve().parents[1]
NOISE = 0.3
LENGTH = 60


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
  """The smoke preset (4 reach episodes, 32 px, 60 steps) with action noise, collected by the
  entry point in a fresh process."""
  data_dir = tmp_path_factory.mktemp("demos")
  env = dict(os.environ, MUJOCO_GL="egl")
  result = subprocess.run(
      [sys.executable, "-m", "experiments.collect_demos",
       "--config=experiments/configs/collect_demos.py:smoke", f"--config.data_dir={data_dir}",
       f"--config.action_noise={NOISE}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "kept 4/4" in result.stdout
  return str(data_dir / "sim_smoke" / "0.1.0")


@pytest.fixture(scope="module")
def episodes(demo_dir):
  builder = tfds.builder_from_directory(demo_dir)
  out = []
  for split in ("train", "val"):
    for episode in tfds.as_numpy(builder.as_dataset(split=split)):
      steps = list(episode["steps"])
      out.append({"meta": episode["episode_metadata"],
                  "steps": {k: np.stack([s[k] for s in steps]) for k in steps[0]
                            if k != "observation"},
                  "obs": {k: np.stack([s["observation"][k] for s in steps])
                          for k in steps[0]["observation"]}})
  return sorted(out, key=lambda e: int(e["meta"]["episode_index"]))


@pytest.fixture(scope="module")
def env():
  return envs.make("arm_reach", action_space="ee_delta")


def test_info_and_splits(demo_dir):
  info = collect.read_info(demo_dir)
  assert (info["train_episodes"], info["val_episodes"]) == (3, 1)
  assert info["attempted"] == 4 and info["demonstrator_successes"] == 4
  assert info["action_space"] == "ee_delta" and info["action_dim"] == 7
  assert info["collect_config"]["action_noise"] == NOISE
  builder = tfds.builder_from_directory(demo_dir)
  assert builder.info.splits["train"].num_examples == 3
  assert builder.info.splits["val"].num_examples == 1
  assert info["frames"] >= 4 * 11   # each episode: its success step + 1 + 10 more


def test_episodes_end_after_success_and_are_rendered(episodes, env):
  keys = np.asarray(collect.episode_keys(0, 8))
  assert [int(e["meta"]["episode_index"]) for e in episodes] == [0, 1, 2, 3]
  for e in episodes:
    meta, steps, obs = e["meta"], e["steps"], e["obs"]
    length = int(meta["length"])
    assert bool(meta["success"]) and 0 <= int(meta["success_step"]) < LENGTH
    assert length == min(LENGTH, int(meta["success_step"]) + 1 + 10)
    np.testing.assert_array_equal(meta["reset_key"], keys[int(meta["episode_index"])])
    assert steps["action"].shape == (length, 7) and steps["is_terminal"][-1]
    assert not steps["is_terminal"][:-1].any() and steps["is_first"][0]
    assert {s.decode() for s in steps["language_instruction"]} == {env.unwrapped.PROMPT}
    for camera in ("image_primary", "image_wrist"):
      assert obs[camera].shape == (length, 32, 32, 3) and obs[camera].dtype == np.uint8
      # The arm moves: the first and last frames differ, and frames are not blank.
      assert np.abs(obs[camera][0].astype(int) - obs[camera][-1].astype(int)).mean() > 1.0
      assert obs[camera].std() > 5.0
    np.testing.assert_allclose(obs["proprio"], obs["state"][:, :18])
    assert "dr_object_mass_scale" in meta and "dr_action_latency" in meta


def test_noise_is_executed_and_labels_stay_clean(episodes):
  for e in episodes:
    label, executed = e["steps"]["action"], e["steps"]["executed_action"]
    assert np.abs(executed[:, :6] - label[:, :6]).mean() > 0.05
    np.testing.assert_array_equal(executed[:, 6], label[:, 6])       # no noise on the gripper
    assert np.all(np.abs(executed) <= 1.0)
    np.testing.assert_array_equal(e["steps"]["joint_position_action"][:, 7], label[:, 6])


def test_replay_reproduces_states_and_expert_labels(episodes, env):
  """From the recorded reset key, the executed actions give the recorded states, and the expert
  in each recorded state gives the recorded label (the clean action)."""
  expert = jax.jit(experts.make_expert(env))
  reset, step = jax.jit(env.reset), jax.jit(env.step)
  for e in episodes[:2]:
    state = reset(jnp.asarray(e["meta"]["reset_key"]))
    for t in range(int(e["meta"]["length"])):
      np.testing.assert_allclose(state.obs["state"], e["obs"]["state"][t], atol=2e-4,
                                 err_msg=f"step {t}")
      np.testing.assert_allclose(expert(state), e["steps"]["action"][t], atol=2e-4)
      state = step(state, jnp.asarray(e["steps"]["executed_action"][t]))
      np.testing.assert_allclose(state.info["ctrl"][:7],
                                 e["steps"]["joint_position_action"][t, :7], atol=2e-4)


def test_demo_states_are_never_an_eval_set_state():
  demo = {tuple(k) for k in np.asarray(collect.episode_keys(0, 500))}
  for seed in range(3):
    evals = {tuple(k) for k in np.asarray(closed_loop.initial_keys(seed, 500))}
    assert not demo & evals


def test_vlajax_data_reads_the_demos(demo_dir, episodes, tmp_path):
  info = collect.read_info(demo_dir)
  collect.register(info)
  root = str(pathlib.Path(demo_dir).parents[1])
  cfg = lib.small_config(root, {"sim_smoke": 1.0}, normalization="none", augment=False,
                         image_size=(32, 32), global_batch_size=8, horizon=4, action_dim=7,
                         proprio_dim=18)
  batch = loader_lib.DataLoader(cfg, stats_dir=str(tmp_path / "stats")).next_local()
  assert batch["observation"]["image_primary"].shape == (8, 1, 32, 32, 3)
  assert batch["observation"]["image_wrist"].shape == (8, 1, 32, 32, 3)
  assert batch["action"].shape == (8, 4, 7)
  assert set(batch["instruction"]) == {b"move the gripper to the green marker"}
  # The gripper: +1 (open) in the env is 1 in the dataset; to_env_action maps it back.
  gripper = np.asarray(batch["action"])[..., 6]
  assert set(np.unique(gripper)) <= {0.0, 1.0} and gripper.max() == 1.0
  np.testing.assert_array_equal(collect.to_env_action(np.asarray(batch["action"]))[..., 6],
                                2.0 * gripper - 1.0)
  # Every batch row's first action is a recorded label of some step (unnormalized here).
  labels = np.concatenate([e["steps"]["action"] for e in episodes])
  for row in np.asarray(batch["action"])[:, 0, :6]:
    assert np.min(np.abs(labels[:, :6] - row).max(axis=1)) < 1e-5


def test_episode_end_rule():
  success = np.zeros(20)
  success[[5, 6]] = 1
  assert collect._episode_end(success, np.zeros(20), 3) == (9, 5)   # pylint: disable=protected-access
  assert collect._episode_end(success, np.zeros(20), 30) == (20, 5)  # pylint: disable=protected-access
  done = np.zeros(20)
  done[3] = 1
  assert collect._episode_end(np.zeros(20), done, 3) == (4, -1)      # pylint: disable=protected-access


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="num_episodes"):
    collect.CollectConfig(num_episodes=0)
  with pytest.raises(ValueError, match="action_noise"):
    collect.CollectConfig(action_noise=-1.0)
  cartpole = envs.make("cartpole")
  with pytest.raises(ValueError, match="success"):
    next(collect.episodes(cartpole, None, collect.CollectConfig()))
  with pytest.raises(FileNotFoundError, match="demo_info.json"):
    collect.read_info("/nonexistent")
