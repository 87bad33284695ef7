"""PPO: solves cart-pole, device-count invariance, non-finite stop, policy loading, bad config keys."""
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import ppo_locomotion as configs
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.core.checkpoint import Checkpointer
from vlajax.rl import loop, ppo

REPO = pathlib.Path(__file__).resolve().parents[1]
# Documented in README: a random policy balances for ~30 of 200 steps; PPO reaches > 150.
CARTPOLE_SOLVED_RETURN = 150.0


def _learner(name, devices=None, **ppo_overrides):
  config = configs.get_config(name)
  config.ppo.update(ppo_overrides)
  env = envs.make(config.env_name, config=config.env)
  mesh = mesh_lib.make_mesh({"data": -1}, devices=devices)
  return ppo.Learner(env, config.ppo, mesh), config


@pytest.fixture(scope="module")
def smoke_learners():
  """The smoke learner on 1 and on 4 devices, compiled once for the tests of this module."""
  return {n: _learner("smoke", devices=jax.devices()[:n]) for n in (1, 4)}


def test_ppo_solves_cartpole():
  learner, config = _learner("cartpole")
  state = learner.init(jax.random.PRNGKey(0))
  before = float(learner.evaluate(state, jax.random.PRNGKey(1), 32)["eval/episode_return"])
  for _ in range(config.ppo.num_iterations):
    state, metrics = learner.iteration(state)
  after = float(learner.evaluate(state, jax.random.PRNGKey(1), 32)["eval/episode_return"])
  assert before < 100.0, before
  assert after >= CARTPOLE_SOLVED_RETURN, (before, after)
  assert np.isfinite(float(metrics["loss/total"]))
  for key in ("ppo/approx_kl", "ppo/clip_fraction", "ppo/explained_variance", "loss/entropy",
              "reward/upright", "episode/return"):
    assert key in metrics


def test_one_vs_four_devices_match(smoke_learners):
  assert jax.device_count() >= 4
  results = []
  for num_devices in (1, 4):
    learner, _ = smoke_learners[num_devices]
    state = learner.init(jax.random.PRNGKey(3))
    losses = []
    for _ in range(3):
      state, metrics = learner.iteration(state)
      losses.append(float(metrics["loss/total"]))
    results.append((losses, jax.device_get(state.params)))
    assert learner.iteration._cache_size() == 1  # the state keeps one signature: no recompiles
    if num_devices == 4:
      assert len(state.env_state.obs["state"].sharding.device_set) == 4
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=2e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_recomputed_advantages_match_precomputed_ones_with_one_minibatch():
  """`recompute_advantages` (brax's way: GAE in every minibatch loss with the current value net,
  minibatches of whole trajectories) equals the precomputed path when the single minibatch's loss
  runs at the rollout's parameters (1 epoch × 1 minibatch). Without bootstrapping on timeouts, so
  the value of the observation after the rollout is used too."""
  results = []
  for recompute in (False, True):
    learner, _ = _learner("smoke", devices=jax.devices()[:1], num_minibatches=1, num_epochs=1,
                          bootstrap_on_timeout=False, recompute_advantages=recompute)
    state = learner.init(jax.random.PRNGKey(5))
    losses, finished = [], 0.0
    for _ in range(5):
      state, metrics = learner.iteration(state)
      losses.append(float(metrics["loss/total"]))
      finished += float(metrics["episode/finished"])
    results.append((losses, jax.device_get(state.params)))
    assert finished > 0   # episode ends inside the rollouts (GAE's done handling is exercised)
  # The losses agree to float precision at every iteration. The parameters drift apart by
  # summation-order noise (a different sample order in the loss's means) that Adam's normalized
  # steps and the next rollouts amplify: ~0.2 % in single weights after 5 iterations.
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
    np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-4)
  bad = ppo.default_config()
  bad.update(dict(num_envs=48, num_minibatches=32, recompute_advantages=True))
  with pytest.raises(ValueError, match="recompute_advantages"):
    ppo.validate(bad, 1)


def test_lr_schedules_and_adaptive_kl():
  cfg = ppo.default_config()
  cfg.num_iterations = 10
  for name, expected_end in (("constant", cfg.learning_rate), ("linear", 0.0), ("cosine", 0.0)):
    cfg.lr_schedule = name
    assert np.isclose(float(ppo.scheduled_lr(cfg, 0, 0.0)), cfg.learning_rate)
    assert np.isclose(float(ppo.scheduled_lr(cfg, 10, 0.0)), expected_end, atol=1e-9)
  cfg.lr_schedule = "adaptive_kl"
  assert np.isclose(float(ppo.adapt_lr_to_kl(cfg, 1e-3, 0.1)), 1e-3 / 1.5)
  assert np.isclose(float(ppo.adapt_lr_to_kl(cfg, 1e-3, 0.001)), 1.5e-3)
  assert np.isclose(float(ppo.adapt_lr_to_kl(cfg, 1e-3, 0.01)), 1e-3)
  cfg.lr_schedule = "warmup"
  with pytest.raises(ValueError, match="lr_schedule"):
    ppo.validate(cfg, 1)
  cfg.lr_schedule = "constant"
  cfg.behaviour_log_prob = "recomputed"
  with pytest.raises(ValueError, match="behaviour_log_prob"):
    ppo.validate(cfg, 1)


def test_behaviour_log_prob_under_updated_stats_starts_the_ratio_at_one():
  """At learning rate 0 the params never move, so the ratio leaves 1 only through the normalizer
  update: "updated_stats" evaluates the behaviour log-prob under the updated statistics (KL and
  clip fraction exactly 0); "rollout" (brax) keeps the log-prob the policy acted with (KL > 0)."""
  kl = {}
  for mode in ppo.BEHAVIOUR_LOG_PROBS:
    learner, _ = _learner("smoke", devices=jax.devices()[:1], behaviour_log_prob=mode,
                          learning_rate=0.0, num_epochs=1, num_minibatches=1,
                          recompute_advantages=False)
    state = learner.init(jax.random.PRNGKey(0))
    for _ in range(2):
      state, metrics = learner.iteration(state)
    kl[mode] = (float(metrics["ppo/approx_kl"]), float(metrics["ppo/clip_fraction"]))
  assert kl["updated_stats"] == (0.0, 0.0), kl
  assert kl["rollout"][0] > 1e-6, kl


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, smoke_learners):
  good, config = smoke_learners[4]
  config = config.copy_and_resolve_references()    # the fixture is shared
  config.run.checkpoint_every = 1
  loop.train(good, config.run, tmp_path, num_iterations=2, stream=None)
  # Continue the same run with a learning rate that overflows the parameters at the first update.
  bad, _ = _learner("smoke", devices=jax.devices()[:4], learning_rate=1e35)
  with pytest.raises(loop.NonFiniteLossError, match="non-finite loss .* iteration 3"):
    loop.train(bad, config.run, tmp_path, num_iterations=10, stream=None)
  checkpointer = Checkpointer(tmp_path / "checkpoints")
  assert checkpointer.latest_step() == 2
  restored = checkpointer.restore(loop.state_to_dict(good.init(jax.random.PRNGKey(0))))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))
  assert int(restored["iteration"]) == 2


def test_bad_config_key_names_the_key():
  result = subprocess.run(
      [sys.executable, "-m", "experiments.ppo_locomotion",
       "--config=experiments/configs/ppo_locomotion.py:smoke", "--config.ppo.learnin_rate=0.1"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "learnin_rate" in result.stderr
  with pytest.raises(KeyError, match="bogus_key"):
    envs.make("cartpole", bogus_key=1)
  with pytest.raises(KeyError, match="no_such_env"):
    envs.make("no_such_env")
  bad = ppo.default_config()
  bad.reset_refresh = 0
  with pytest.raises(ValueError, match="ppo.reset_refresh"):
    ppo.validate(bad, 1)
