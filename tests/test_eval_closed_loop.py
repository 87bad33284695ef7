"""Closed-loop evaluation: fixed seeded initial states, per-episode outcomes (success, return,
length, time to success), chunked execution, and RL evaluation on the same rollout."""
import json

import av
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax import envs
from vlajax.envs import rollout as rollout_lib
from vlajax.eval import closed_loop, job, policies, stats
from vlajax.policies import chunking
from vlajax.rl import evaluation
from experiments.configs import eval_policy as eval_config


def test_initial_keys_fix_the_initial_states():
  env = envs.make("cartpole")
  reset = jax.jit(jax.vmap(env.reset))
  first = reset(closed_loop.initial_keys(3, 8)).obs["state"]
  again = reset(closed_loop.initial_keys(3, 8)).obs["state"]
  other = reset(closed_loop.initial_keys(4, 8)).obs["state"]
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  with pytest.raises(ValueError, match="num_episodes must be >= 1"):
    closed_loop.initial_keys(0, 0)


def test_rl_evaluation_is_the_mean_of_the_rollout_episodes():
  env = envs.make("cartpole")
  batched = rollout_lib.make_batched_env(env, 40)
  act = rollout_lib.stateless(lambda obs: jnp.full(obs["state"].shape[:1] + (1,), 0.7))
  rng = jax.random.PRNGKey(5)
  means = jax.jit(lambda r: evaluation.evaluate(batched, act, (), r, 6, 40))(rng)
  k_reset, k_act = jax.random.split(rng)
  episodes = jax.jit(lambda: rollout_lib.rollout(batched, act, (), jax.random.split(k_reset, 6),
                                                 40, k_act))()
  # A constant push topples some poles before 40 steps: lengths differ and are counted to `done`.
  assert len(set(np.asarray(episodes.length).tolist())) > 1 and episodes.length.max() <= 40
  np.testing.assert_allclose(means["eval/episode_return"], episodes.episode_return.mean(), rtol=1e-6)
  np.testing.assert_allclose(means["eval/episode_length"], episodes.length.mean(), rtol=1e-6)
  assert not episodes.success.any() and np.all(episodes.time_to_success == -1)  # no success signal


def test_eval_job_scripted_vs_random_on_reach(tmp_path):
  """The whole job on `arm_reach`: the expert succeeds on every fixed state, random actions on none;
  time to success agrees with the recorded per-step flags; report, videos and the verdict."""
  config = eval_config.get_config("scripted")
  config.update(dict(num_episodes=6, batch_size=4, episode_length=60, seed=11, videos=2,
                     video_size=32, out_dir=str(tmp_path)))
  config.compare.kind = "random"
  progress = []
  result = job.run(config)
  a, b = result["overall"], result["comparison"]["b"]
  assert (a["n"], a["successes"]) == (6, 6) and b["successes"] == 0
  assert (a["ci_low"], a["ci_high"]) == tuple(stats.wilson_interval(6, 6))
  assert result["comparison"]["p_value"] == pytest.approx(
      stats.fisher_exact_test(6, 6, 0, 6, alternative="greater").p_value)
  assert result["comparison"]["verdict"].startswith("A > B")
  saved = json.loads((tmp_path / "a" / "report.json").read_text())
  assert saved["overall"]["successes"] == 6 and len(saved["videos"]) == 2
  assert (tmp_path / "comparison.md").read_text().startswith("A > B")
  for path in saved["videos"]:
    with av.open(path) as container:
      assert sum(1 for _ in container.decode(video=0)) > 1

  # The same states and program through the library: time to success = first recorded success.
  env = envs.make("arm_reach", action_space="ee_delta")
  episodes, trace = closed_loop.evaluate_policy(env, policies.load("scripted", env), 11, 6, 60,
                                                batch_size=4, record_episodes=2,
                                                progress=lambda d, t: progress.append((d, t)))
  assert progress == [(4, 6), (6, 6)]
  flags = trace["success"] > 0                                   # [60, 2]
  first = np.where(flags.any(0), flags.argmax(0) + 1, -1)
  np.testing.assert_array_equal(episodes.time_to_success[:2], first)
  assert np.all(episodes.time_to_success <= episodes.length)
  assert saved["overall"]["mean_time_to_success"] == pytest.approx(episodes.time_to_success.mean())
  summary = closed_loop.summarize(episodes)
  assert summary["successes"] == 6 and summary["n"] == 6


def _counting_chunks(obs, rng):
  """f32[B, H=4, 1]: entry h of the chunk computed at step t is 100 t + h."""
  del rng
  t = obs["t"]
  return (100.0 * t[:, None] + jnp.arange(4.0)[None, :])[..., None]


def _run(act, carry, steps=7):
  actions = []
  for t in range(steps):
    action, carry = act(carry, {"t": jnp.full((2,), float(t))}, jax.random.PRNGKey(t))
    actions.append(np.asarray(action)[:, 0])
  return np.stack(actions)


def test_replan_every_k_executes_k_of_each_chunk():
  act, init = chunking.replan_every_k(_counting_chunks, horizon=4, execute=3)
  actions = _run(jax.jit(act), init(2, 1))
  np.testing.assert_array_equal(actions[:, 0], [0, 1, 2, 300, 301, 302, 600])
  with pytest.raises(ValueError, match="execute \\(5\\) must be in 1..horizon \\(4\\)"):
    chunking.replan_every_k(_counting_chunks, horizon=4, execute=5)
  wrong, init = chunking.replan_every_k(_counting_chunks, horizon=3, execute=3)
  with pytest.raises(ValueError, match="chunk policy returned shape \\(2, 4, 1\\)"):
    _run(wrong, init(2, 1), steps=1)


def test_temporal_ensemble_averages_the_predictions_for_now():
  act, init = chunking.temporal_ensemble(_counting_chunks, horizon=4, alpha=0.0)
  actions = _run(jax.jit(act), init(2, 1))
  # With alpha 0 the action at step t is the plain mean over the chunks of steps t-3..t of their
  # entry for t: at t the chunk of step s predicts 100 s + (t - s).
  expected = [np.mean([100 * s + (t - s) for s in range(max(0, t - 3), t + 1)]) for t in range(7)]
  np.testing.assert_allclose(actions[:, 0], expected, rtol=1e-6)
