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
