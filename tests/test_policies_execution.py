"""One chunk-execution implementation (`policies.execution`): the bridge executor's `ActionQueue`
stepped tick by tick with zero latency executes the same actions as the jitted rollout's
`policies.chunking` executors, for every K of H and merge rule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax.bridge.executor import ActionQueue, ExecutorConfig
from vlajax.policies import chunking, execution

H = 4
STEPS = 11


def _chunk(t):
  """The chunk planned at tick t: its entry k (for tick t + k) is 100 t + k."""
  return 100.0 * t + np.arange(H, dtype=np.float64)


def _counting_chunks(obs, rng):
  del rng
  return (100.0 * obs["t"][:, None] + jnp.arange(float(H))[None, :])[..., None]


def _queue_actions(execute, merge="replace", alpha=0.01, favor="old", crossfade_steps=4):
  """A zero-latency bridge executor, stepped by hand: each tick, plan from this tick when the
  executor would (the chunk arrives before the tick's action is popped), then pop."""
  config = ExecutorConfig(chunk_length=H, refill_threshold=execution.refill_threshold(H, execute),
                          merge=merge, ensemble_alpha=alpha, ensemble_favor=favor,
                          crossfade_steps=crossfade_steps)
  config.validate()
  queue, actions = ActionQueue(config), []
  for t in range(STEPS):
    if config.needs_plan(len(queue)):
      queue.merge(_chunk(t)[:, None])
    actions.append(queue.pop()[0])
  return np.asarray(actions)


def _rollout_actions(act, init):
  """`act` stepped over STEPS ticks of a batch of 2 envs (one compiled scan)."""
  def step(carry, t):
    action, carry = act(carry, {"t": jnp.full((2,), t)}, jax.random.PRNGKey(0))
    return carry, action
  _, actions = jax.jit(lambda: jax.lax.scan(step, init(2, 1), jnp.arange(float(STEPS))))()
  assert actions.shape == (STEPS, 2, 1)
  actions = np.asarray(actions)[..., 0]
  np.testing.assert_array_equal(actions[:, 0], actions[:, 1])
  return actions[:, 0]


@pytest.mark.parametrize("execute", [1, 2, 3, 4])
def test_queue_matches_replan_every_k(execute):
  ours = _queue_actions(execute)
  theirs = _rollout_actions(*chunking.replan_every_k(_counting_chunks, H, execute))
  np.testing.assert_array_equal(ours, theirs)
  # By hand: the first K entries of the chunks planned at ticks 0, K, 2K, ...
  np.testing.assert_array_equal(ours, [100 * (t - t % execute) + t % execute for t in range(STEPS)])


@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("favor", ["old", "new"])
def test_queue_matches_temporal_ensemble(alpha, favor):
  ours = _queue_actions(1, "ensemble", alpha, favor)
  theirs = _rollout_actions(*chunking.temporal_ensemble(_counting_chunks, H, alpha,
                                                        oldest_first=favor == "old"))
  np.testing.assert_allclose(ours, theirs, rtol=1e-6)
  # By hand: at tick t the chunks of ticks s = t-3..t predict 100 s + (t - s); the i-th oldest
  # weighs exp(-alpha * i) ("old") or the i-th newest does ("new").
  expected = []
  for t in range(STEPS):
    sources = np.arange(max(0, t - H + 1), t + 1)
    weights = np.exp(-alpha * np.arange(len(sources)))
    weights = weights if favor == "old" else weights[::-1]
    expected.append(weights @ (100.0 * sources + (t - sources)) / weights.sum())
  np.testing.assert_allclose(ours, expected, rtol=1e-9)


@pytest.mark.parametrize("execute", [1, 2, 3, 4])
def test_queue_matches_execute_chunks_for_every_rule(execute):
  rules = [execution.MergeRule("replace"), execution.MergeRule("crossfade", crossfade_steps=2)]
  rules += [execution.MergeRule("ensemble", alpha, favor)
            for alpha in (0.0, 0.5) for favor in ("old", "new")]
  for rule in rules:
    ours = _queue_actions(execute, rule.merge, rule.alpha, rule.favor, rule.crossfade_steps)
    theirs = _rollout_actions(*chunking.execute_chunks(_counting_chunks, H, execute, rule))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, err_msg=str(rule))
  if execute == H:   # no overlap: every rule is "replace"
    np.testing.assert_array_equal(ours, _queue_actions(execute))


def test_ensemble_with_k_2_averages_the_overlap():
  # K = 2 of H = 4, alpha 0: ticks 2, 3 average the chunks of ticks 0 and 2, ticks 4, 5 those of
  # ticks 2 and 4, ...
  ours = _queue_actions(2, "ensemble", 0.0)
  np.testing.assert_allclose(ours[:6], [0, 1, (2 + 200) / 2, (3 + 201) / 2, (202 + 400) / 2,
                                        (203 + 401) / 2])


def test_execute_k_of_h_thresholds():
  for horizon in (1, 3, 10, 16):
    for k in range(1, horizon + 1):
      g = execution.refill_threshold(horizon, k)
      # The executor plans when fewer than g * H actions are pending: first with H - K left.
      plans = [queued for queued in range(horizon, -1, -1)
               if execution.needs_plan(queued, horizon, g)]
      assert plans[0] == horizon - k and 0.0 < g <= 1.0, (horizon, k, g)
  with pytest.raises(ValueError, match="execute \\(5\\) must be in 1..horizon \\(4\\)"):
    execution.refill_threshold(4, 5)
  with pytest.raises(ValueError, match="merge must be"):
    chunking.execute_chunks(_counting_chunks, H, 1, execution.MergeRule("average"))
  with pytest.raises(ValueError, match="ensemble_favor"):
    ExecutorConfig(ensemble_favor="middle").validate()
