"""TD-MPC2-style learner: two-hot regression, MPPI on a known cost, SimNorm, solving cart-pole,
1 vs 4 devices, resume after interruption, bad config keys."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import tdmpc_control as configs
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.rl import loop, mppi, tdmpc
from vlajax.rl.twohot import Bins, symexp, symlog

# Documented in README/BENCHMARKS: a random policy balances ~30 of 200 steps (return ≈ 30-60); PPO
# reaches > 150 in ~77k env steps. TD-MPC's CI budget is 4k env steps of the `cartpole` config
# (action repeat 2, horizon 5, target τ 0.1; BENCHMARKS.md, 5 seeds: 126-184 at 3.2k, 190-198 at
# 4.8k, 193-198 at 6.4k). This test's own seed-0 run, in the 4-host-device test process, measured
# 44 before training, 192 at 4k and 198 at 6.4k on 32 evaluation episodes (τ 0.01: 134 and 190;
# horizon 3 as well: 145 and 169); the thresholds leave room for seed-level spread. Both learning
# runs are `-m slow` (~7 min on 2 CPU cores, mostly the 4k env steps of planning and updates); the
# default run checks that the smoke run's world-model losses fall (`test_world_model_fits_...`).
LEARNING_RETURN = 140.0
CI_ITERATIONS = 10              # × 400 env steps (8 envs × 25 control steps × action repeat 2)


def test_two_hot_round_trip_and_loss():
  bins = Bins(101, -10.0, 10.0)
  y = jnp.asarray([-5000.0, -3.7, -1.0, -0.01, 0.0, 0.3, 1.0, 2.5, 17.0, 900.0, 22000.0])
  target = bins.encode(y)
  assert target.shape == (11, 101)
  np.testing.assert_allclose(np.asarray(jnp.sum(target, -1)), 1.0, rtol=1e-6)
  assert int(jnp.max(jnp.sum(target > 0, -1))) <= 2                  # two-hot, not smeared
  decoded = bins.decode(jnp.log(target))                              # logits whose softmax is target
  np.testing.assert_allclose(np.asarray(decoded), np.asarray(y), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(symexp(symlog(y))), np.asarray(y), rtol=1e-5)
  # Values beyond symexp(10) ≈ 22025 clip to the top bin.
  assert float(bins.decode(jnp.log(bins.encode(jnp.asarray(1e6))))) == pytest.approx(
      float(symexp(10.0)), rel=1e-4)
  # The cross-entropy is minimized (at the target's entropy) by the target's own logits.
  ce_true = bins.cross_entropy(jnp.log(target[5] + 1e-12), y[5])
  ce_other = bins.cross_entropy(jnp.log(target[6] + 1e-12), y[5])
  assert float(ce_true) < float(ce_other)
  with pytest.raises(ValueError, match="num_bins"):
    Bins(1, -1.0, 1.0)


def test_mppi_finds_the_optimum_of_a_quadratic_cost():
  config = mppi.default_config()          # TD-MPC2's planner: 512 samples, 64 elites, 6 iterations
  horizon, action_size = 3, 2
  optimum = jnp.asarray([[0.6, -0.3], [-0.5, 0.2], [0.1, 0.8]])
  score = lambda plans, _: -jnp.sum((plans - optimum) ** 2, axis=(1, 2))   # return = −cost

  plan = jax.jit(lambda key, init: mppi.plan(config, key, score, init, explore=False))
  result = plan(jax.random.PRNGKey(0), jnp.zeros((horizon, action_size)))
  np.testing.assert_allclose(np.asarray(result.mean), np.asarray(optimum), atol=0.05)
  np.testing.assert_allclose(np.asarray(result.action), np.asarray(optimum[0]), atol=0.1)
  assert float(jnp.max(result.std)) < 0.3           # the search distribution contracted
  # Batched over envs with different optima (vmapped, as the learner does).
  optima = jnp.stack([optimum, -optimum, 0.5 * optimum])
  batched = jax.jit(jax.vmap(lambda key, opt: mppi.plan(
      config, key, lambda p, _: -jnp.sum((p - opt) ** 2, axis=(1, 2)),
      jnp.zeros((horizon, action_size)), explore=False).mean))
  means = batched(jax.random.split(jax.random.PRNGKey(1), 3), optima)
  np.testing.assert_allclose(np.asarray(means), np.asarray(optima), atol=0.05)
  # Prior plans at the optimum are scored with the sampled ones and win at once.
  prior = jnp.broadcast_to(optimum, (config.num_prior_samples, horizon, action_size))
  one_iter = ml_collections.ConfigDict(dict(config.to_dict(), iterations=1))
  start = jnp.zeros((horizon, action_size))
  guided = mppi.plan(one_iter, jax.random.PRNGKey(2), score, start, prior, explore=False)
  unguided = mppi.plan(one_iter, jax.random.PRNGKey(2), score, start, explore=False)
  assert float(guided.score) == pytest.approx(0.0, abs=1e-6)
  assert float(unguided.score) < -0.05
  assert float(jnp.sum((guided.mean - optimum) ** 2)) < float(jnp.sum((unguided.mean - optimum) ** 2))
  np.testing.assert_array_equal(np.asarray(mppi.shift(optimum))[:2], np.asarray(optimum)[1:])
  bad = ml_collections.ConfigDict(dict(config.to_dict(), num_elites=1000))
  with pytest.raises(ValueError, match="num_elites"):
    mppi.validate(bad)


def test_simnorm_is_a_softmax_per_group():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 32)) * 4
  z = tdmpc.simnorm(x, 8).reshape(3, 4, 8)
  np.testing.assert_allclose(np.asarray(jnp.sum(z, -1)), 1.0, rtol=1e-5)
  assert float(jnp.min(z)) >= 0.0
  config = tdmpc.default_config()
  config.episode_length = 200
  assert tdmpc.discount_for(config) == pytest.approx(0.975)
  assert tdmpc.min_replay_for(config) == 1000
  config.episode_length = 1000
  assert tdmpc.discount_for(config) == pytest.approx(0.995)


def _learner(name, devices=None, **overrides):
  config = configs.get_config(name)
  config.tdmpc.update(overrides)
  env = envs.make(config.env_name, config=config.env)
  mesh = mesh_lib.make_mesh({"data": -1}, devices=devices)
  return tdmpc.Learner(env, config.tdmpc, mesh), config


@pytest.fixture(scope="module")
def smoke4():
  """The smoke learner on 4 devices (compiled once, shared by several tests)."""
  return _learner("smoke", devices=jax.devices()[:4])


def _train_cartpole(num_iterations):
  learner, config = _learner("cartpole", devices=jax.devices()[:1])  # 1 vs 4: tested below
  state = learner.init(jax.random.PRNGKey(0))
  before = float(learner.evaluate(state, jax.random.PRNGKey(1), 32)["eval/episode_return"])
  for _ in range(num_iterations):
    state, metrics = learner.iteration(state)
  after = float(learner.evaluate(state, jax.random.PRNGKey(1), 32)["eval/episode_return"])
  assert float(metrics["tdmpc/valid_windows"]) > 0.95
  for key in ("loss/consistency", "loss/reward", "loss/value", "loss/pi"):
    assert np.isfinite(float(metrics[key])), key
  return before, after, num_iterations * learner.env_steps_per_iteration


@pytest.mark.slow
def test_tdmpc_learns_cartpole_in_ci_budget():
  before, after, steps = _train_cartpole(CI_ITERATIONS)
  assert steps == 4000
  assert before < 60.0, before
  assert after >= LEARNING_RETURN, (before, after)


@pytest.mark.slow
def test_tdmpc_learns_cartpole_to_170_in_6400_steps():
  before, after, steps = _train_cartpole(16)
  assert steps == 6400
  assert after >= 170.0, (before, after)


def test_planning_is_vmapped_and_warm_started(smoke4):
  learner, config = smoke4
  state = learner.init(jax.random.PRNGKey(0))
  obs = state.env_state.obs["state"]
  mean = jnp.zeros((config.tdmpc.num_envs, config.tdmpc.horizon, learner.action_size))
  action, plan = learner.act(state.params, state.obs_stats, obs, mean, jax.random.PRNGKey(1))
  assert action.shape == (config.tdmpc.num_envs, learner.action_size)
  assert plan.shape == mean.shape and float(jnp.max(jnp.abs(action))) <= 1.0
  # Envs plan independently: one env's plan does not depend on another env's observation.
  obs2 = obs.at[1:].add(0.5)
  _, plan2 = learner.act(state.params, state.obs_stats, obs2, mean, jax.random.PRNGKey(1))
  np.testing.assert_allclose(np.asarray(plan2[0]), np.asarray(plan[0]), rtol=1e-5, atol=1e-6)
  # Warm start: the previous plan, shifted, is where the search starts.
  state, _ = learner.iteration(state)
  # Learning starts with TD-MPC2's pretraining on the seed data, then the per-step updates.
  cfg = config.tdmpc
  seed_steps = -(-learner.min_replay // cfg.num_envs)     # batched env steps of random actions
  learning_steps = cfg.steps_per_iteration - seed_steps
  assert learning_steps >= 2 and learner.pretrain_updates == learner.min_replay
  assert int(state.num_updates) == (learner.pretrain_updates
                                    + cfg.grad_updates_per_step * (learning_steps - 1))
  state, _ = learner.iteration(state)
  assert float(jnp.max(jnp.abs(state.plan_mean))) > 0.0
  # The state keeps one signature (no weak types after a step): no recompiles.
  assert learner.iteration._cache_size() == 1  # pylint: disable=protected-access


def _with_output_layer(params, head, **leaves):
  """A copy of `params` with the output Dense layer of `head` given `leaves` (bias/kernel)."""
  params = jax.tree.map(lambda x: x, params)
  params[head]["params"]["Dense_2"].update(leaves)
  return params


def test_predicted_termination_ends_a_plans_return(smoke4):
  """Episodic planning: after the first step into a latent the termination head marks terminal,
  a plan earns no more reward or value; with no termination predicted the score is unchanged."""
  learner, config = smoke4
  assert config.tdmpc.episodic
  bins = jnp.linspace(0.0, 3.0, config.tdmpc.num_bins)    # reward and Q heads start at zero: bias up
  params = learner.model.init(jax.random.PRNGKey(0))
  params = _with_output_layer(params, "reward", bias=bins)
  params = _with_output_layer(params, "q", bias=jnp.broadcast_to(bins, (config.tdmpc.num_q,) + bins.shape))
  z = learner.model.encode(params, jnp.ones(learner.obs_shape))
  plans = jax.random.uniform(jax.random.PRNGKey(1), (5, config.tdmpc.horizon, learner.action_size),
                             minval=-1, maxval=1)
  key = jax.random.PRNGKey(2)
  kernel = jnp.zeros_like(params["termination"]["params"]["Dense_2"]["kernel"])
  score = lambda logit: learner.score_plans(
      _with_output_layer(params, "termination", kernel=kernel, bias=jnp.full((1,), logit)),
      z, plans, key)

  first_reward = learner.model.reward(params, jnp.broadcast_to(z, (5,) + z.shape), plans[:, 0])
  assert float(jnp.min(first_reward)) > 1.0
  np.testing.assert_allclose(np.asarray(score(10.0)), np.asarray(first_reward), rtol=1e-5)
  non_episodic = tdmpc.Learner(learner.env, ml_collections.ConfigDict(
      dict(config.tdmpc.to_dict(), episodic=False)), learner.mesh)
  np.testing.assert_allclose(np.asarray(score(-10.0)),
                             np.asarray(non_episodic.score_plans(params, z, plans, key)), rtol=1e-5)
  assert float(jnp.min(score(-10.0) - score(10.0))) > 1.0


def test_one_vs_four_devices_match(smoke4):
  learner4, _ = smoke4
  learner1, _ = _learner("smoke", devices=jax.devices()[:1])
  results = []
  for learner in (learner1, learner4):
    state = learner.init(jax.random.PRNGKey(3))
    losses = []
    for _ in range(2):
      state, metrics = learner.iteration(state)
      losses.append(float(metrics["loss/total"]))
    results.append((losses, jax.device_get(state.params)))
  assert len(state.replay.data["obs"].sharding.device_set) == 4
  assert losses[-1] != 0.0
  # Planning picks elites with top_k, so float-level differences in the cross-device reductions can
  # move actions slightly; the tolerance is looser than SAC's (measured: 6e-4 relative by iteration 3).
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=2e-3, atol=1e-5)
  for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
    np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-4)


NUM_RESUME_ITERATIONS = 8


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, smoke4):
  """An uninterrupted `loop.train` run of the smoke learner, with the run config in its metadata
  (as the entry point writes it): `(run_dir, final state)`."""
  learner, config = smoke4
  config.run.update(dict(checkpoint_every=4, eval_every=0))
  run_dir = tmp_path_factory.mktemp("tdmpc_clean")
  state = loop.train(learner, config.run, run_dir, NUM_RESUME_ITERATIONS, stream=None,
                     metadata={"config": config.to_dict()})
  return run_dir, state


def test_interrupted_run_resumes_to_identical_params(tmp_path, smoke4, clean_run):
  learner, config = smoke4
  interrupted = tmp_path / "interrupted"
  loop.train(learner, config.run, interrupted, 4, stream=None)     # stops after iteration 4
  resumed = loop.train(learner, config.run, interrupted, NUM_RESUME_ITERATIONS, stream=None)
  # The restored state has the signature of a fresh one (size-0 leaves on their shardings too):
  # resuming did not recompile the iteration.
  assert learner.iteration._cache_size() == 1  # pylint: disable=protected-access
  uninterrupted = clean_run[1]
  assert int(resumed.iteration) == int(uninterrupted.iteration) == NUM_RESUME_ITERATIONS
  for tree in ("params", "target_q", "opt_state", "replay", "plan_mean", "q_scale"):
    for a, b in zip(jax.tree.leaves(getattr(resumed, tree)),
                    jax.tree.leaves(getattr(uninterrupted, tree))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_world_model_fits_over_the_smoke_run(clean_run):
  """A cheap learning signal for the default run (the cart-pole returns are `-m slow`): over the
  8 logged iterations of the smoke run every world-model loss falls (measured at iterations 1 and
  8: model 0.87 -> 0.29, reward 2.30 -> 0.77, value 2.26 -> 1.28, termination 0.18 -> 0.05)."""
  run_dir, _ = clean_run
  logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in logged] == [64 * i for i in range(1, NUM_RESUME_ITERATIONS + 1)]
  first, last = logged[0], logged[-1]
  assert last["loss/model"] < 0.6 * first["loss/model"], (first, last)
  for key in ("loss/consistency", "loss/reward", "loss/value", "loss/termination"):
    assert last[key] < first[key], (key, first[key], last[key])


def test_load_policy_plans_like_the_learner(smoke4, clean_run):
  learner, config = smoke4
  run_dir, state = clean_run
  params, stats = jax.device_get(state.params), jax.device_get(state.obs_stats)
  obs = np.asarray(jax.device_get(state.env_state.obs["state"]))   # [num_envs, O] real states
  zeros = jnp.zeros((obs.shape[0], config.tdmpc.horizon, learner.action_size))

  policy, info = tdmpc.load_policy(run_dir, seed=7)
  assert info["step"] == NUM_RESUME_ITERATIONS and info["plan"]
  # The first call plans from no warm start with the first key split off the seed.
  key = jax.random.split(jax.random.PRNGKey(7))[1]
  expected, expected_mean = learner.act(params, stats, obs, zeros, key, explore=False)
  np.testing.assert_allclose(np.asarray(policy({"state": obs})), np.asarray(expected),
                             rtol=1e-5, atol=1e-6)
  # The second call is warm-started by the first call's plan.
  key2 = jax.random.split(jax.random.split(jax.random.PRNGKey(7))[0])[1]
  expected2, _ = learner.act(params, stats, obs, expected_mean, key2, explore=False)
  np.testing.assert_allclose(np.asarray(policy({"state": obs})), np.asarray(expected2),
                             rtol=1e-5, atol=1e-6)
  policy.reset()
  assert policy({"state": obs[0]}).shape == (learner.action_size,)   # unbatched

  prior, info = tdmpc.load_policy(run_dir, plan=False)
  assert not info["plan"]
  expected_prior = learner._prior_act(params, stats, obs, None)  # pylint: disable=protected-access
  np.testing.assert_allclose(np.asarray(prior({"state": obs})), np.asarray(expected_prior),
                             rtol=1e-5, atol=1e-6)
  assert float(np.max(np.abs(np.asarray(expected_prior)))) > 0.0
  with pytest.raises(ValueError, match="shape"):
    prior({"state": obs[:, :2]})


def test_bad_config_values_name_the_key():
  config = configs.get_config("smoke").tdmpc
  for key, value in (("batch_size", 12), ("latent_dim", 20), ("num_q", 1), ("horizon", 0),
                     ("replay_capacity", 48)):
    bad = config.copy_and_resolve_references()
    bad[key] = value
    with pytest.raises(ValueError, match=f"tdmpc.{key}"):
      tdmpc.validate(bad, 4)
  bad = config.copy_and_resolve_references()
  bad.mppi.num_prior_samples = bad.mppi.num_samples
  with pytest.raises(ValueError, match="num_prior_samples"):
    tdmpc.validate(bad, 4)
