"""GAE against a plain Python loop, for both ways of handling time-limit truncation."""
import numpy as np
import pytest

from vlajax.rl.gae import gae


def reference_gae(rewards, values, next_values, dones, truncs, gamma, lam, bootstrap):
  T, B = rewards.shape
  adv = np.zeros((T, B))
  mask = np.ones((T, B))
  for b in range(B):
    running = 0.0
    for t in reversed(range(T)):
      terminal = dones[t, b] and not truncs[t, b]
      if not bootstrap and truncs[t, b]:
        mask[t, b] = 0.0
        running = 0.0
        adv[t, b] = 0.0
        continue
      bootstrap_value = 0.0 if terminal else next_values[t, b]
      delta = rewards[t, b] + gamma * bootstrap_value - values[t, b]
      if dones[t, b]:
        running = 0.0
      running = delta + gamma * lam * running
      adv[t, b] = running
  return adv, adv + values, mask


@pytest.mark.parametrize("bootstrap", [True, False])
def test_gae_matches_python_loop(bootstrap):
  rng = np.random.default_rng(0)
  T, B = 17, 5
  rewards = rng.normal(size=(T, B))
  values = rng.normal(size=(T, B))
  next_values = rng.normal(size=(T, B))
  dones = (rng.random((T, B)) < 0.2).astype(np.float32)
  truncs = dones * (rng.random((T, B)) < 0.5)
  expected = reference_gae(rewards, values, next_values, dones, truncs, 0.97, 0.95, bootstrap)
  got = gae(rewards, values, next_values, dones, truncs, 0.97, 0.95, bootstrap)
  for e, g in zip(expected, got):
    np.testing.assert_allclose(np.asarray(g), e, rtol=1e-5, atol=1e-5)
  assert truncs.sum() > 0 and (dones - truncs).sum() > 0  # both kinds of episode end occur


def test_without_timeout_bootstrap_next_values_at_episode_ends_are_ignored():
  """PPO with `bootstrap_on_timeout=False` passes V(s_{t+1}) as the next row's values (shifted),
  skipping the pass over the final observations: valid only if GAE ignores them at every end."""
  rng = np.random.default_rng(1)
  T, B = 23, 6
  rewards, values, next_values = (rng.normal(size=(T, B)) for _ in range(3))
  dones = (rng.random((T, B)) < 0.25).astype(np.float32)
  truncs = dones * (rng.random((T, B)) < 0.5)
  other = np.where(dones > 0, rng.normal(size=(T, B)) * 100.0, next_values)
  a = gae(rewards, values, next_values, dones, truncs, 0.97, 0.95, False)
  b = gae(rewards, values, other, dones, truncs, 0.97, 0.95, False)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # With the bootstrap, the final observations' values matter at truncations.
  c = gae(rewards, values, next_values, dones, truncs, 0.97, 0.95, True)
  d = gae(rewards, values, other, dones, truncs, 0.97, 0.95, True)
  assert not np.allclose(np.asarray(c[0]), np.asarray(d[0]))


def test_lambda_next_advantage_is_braxs_formula():
  """brax's policy advantage (losses.compute_gae, no episode ends inside the window):
  A_t = r_t + γ vs_{t+1} − V_t with vs_{T} the bootstrap value; at an episode end the
  next value is the bootstrap of that step (0 after a termination)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from vlajax.rl.gae import lambda_next_advantage  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(3)
  T, B, gamma = 9, 4, 0.9
  rewards, values, next_values = (rng.normal(size=(T, B)) for _ in range(3))
  dones = np.zeros((T, B))
  dones[4, 1] = 1.0   # a termination in env 1
  truncs = np.zeros((T, B))
  _, returns, mask = gae(rewards, values, next_values, dones, truncs, gamma, 0.95, True)
  got = np.asarray(lambda_next_advantage(jnp.asarray(rewards), values, next_values, returns, dones,
                                         truncs, mask, gamma, True))
  returns = np.asarray(returns)
  for b in range(B):
    for t in range(T):
      if dones[t, b]:
        expected = rewards[t, b] - values[t, b]
      else:
        nxt = returns[t + 1, b] if t + 1 < T else next_values[t, b]
        expected = rewards[t, b] + gamma * nxt - values[t, b]
      assert got[t, b] == pytest.approx(expected, rel=1e-5, abs=1e-5)
  # Without an episode end it differs from GAE (λ < 1): the one-step advantage on G^λ_{t+1}.
  assert not np.allclose(got[:, 0], np.asarray(returns)[:, 0] - values[:, 0])
