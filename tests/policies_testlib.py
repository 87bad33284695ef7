"""Tiny fixed imitation datasets and a jitted Adam loop shared by the action-head tests."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

BATCH, HORIZON, ACTION_DIM, STATE_DIM = 8, 4, 2, 3


def dataset(images: bool = False, seed: int = 0):
  """8 examples: obs -> normalized chunks (8, 4, 2) with |a| < 1.

  State-only: obs {"proprio": (8, 3)}, chunks a smooth function of the state. With ``images``:
  obs {"proprio": zeros (8, 2, 3), "image_primary": uint8 (8, 2, 16, 16, 3)} (T = 2 history), and
  the chunks depend on the images only (the proprio carries no information).
  """
  rng = np.random.default_rng(seed)
  states = rng.normal(size=(BATCH, STATE_DIM)).astype(np.float32)
  ramp = np.linspace(0.25, 1.0, HORIZON)[None, :, None]
  actions = np.tanh(ramp * (states @ rng.normal(size=(STATE_DIM, ACTION_DIM)))[:, None, :])
  actions = jnp.asarray(0.9 * actions, jnp.float32)
  if not images:
    return {"proprio": jnp.asarray(states)}, actions
  frames = rng.integers(0, 256, size=(BATCH, 2, 16, 16, 3)).astype(np.uint8)
  return {"proprio": jnp.zeros((BATCH, 2, STATE_DIM)), "image_primary": jnp.asarray(frames)}, actions


def fit(head, obs, actions, steps: int = 300, lr: float = 3e-3, seed: int = 0):
  """Inits ``head`` and runs ``steps`` full-batch Adam steps (cosine decay to lr / 10) in one jit.

  Returns (params, per-step losses as a numpy array).
  """
  key = jax.random.PRNGKey(seed)
  params = jax.jit(head.init)(key, obs, actions, key)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.1))

  @jax.jit
  def train(params, rng):
    def step(carry, k):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(lambda p: head.apply(p, obs, actions, k)[0])(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(rng, steps))
    return params, losses

  params, losses = train(params, jax.random.PRNGKey(seed + 1))
  return params, np.asarray(losses)


def loss_drop(losses: np.ndarray) -> tuple[float, float]:
  """(mean of the first 10 losses, mean of the last 20)."""
  return float(losses[:10].mean()), float(losses[-20:].mean())


_SAMPLERS = {}


def jit_sample(head, params, obs, seed: int = 2, **kwargs) -> jax.Array:
  """``sample_actions`` under jit with the key ``PRNGKey(seed)`` (one compiled sampler per head)."""
  cache_key = (id(head), tuple(sorted(kwargs.items())))
  if cache_key not in _SAMPLERS:
    _SAMPLERS[cache_key] = (head, jax.jit(
        lambda p, o, k: head.apply(p, o, k, method=type(head).sample_actions, **kwargs)))
  return _SAMPLERS[cache_key][1](params, obs, jax.random.PRNGKey(seed))


def masked_loss_fn(head):
  """Jitted ``(params, obs, actions, mask) -> (loss, per-example loss)`` with a fixed rng."""
  return jax.jit(lambda p, o, a, m: head.apply(p, o, a, jax.random.PRNGKey(5), m))


def check_mask_invariance(head, params, obs, actions):
  """Perturbing masked target entries leaves the loss unchanged; perturbing valid ones changes it."""
  loss_fn = masked_loss_fn(head)
  mask = np.ones(actions.shape, bool)
  mask[:, -1] = False          # a padded final step (past the episode end)
  mask[::2, :, 1] = False      # a padded action dimension on half the examples
  mask = jnp.asarray(mask)
  perturbed = jnp.where(mask, actions, actions + 50.0)
  loss, per_example = loss_fn(params, obs, actions, mask)
  loss_p, per_example_p = loss_fn(params, obs, perturbed, mask)
  np.testing.assert_allclose(loss_p, loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(per_example_p, per_example, rtol=1e-5, atol=1e-6)
  assert per_example.shape == (actions.shape[0],)
  loss_v, _ = loss_fn(params, obs, actions.at[:, 0].add(0.5), mask)
  assert abs(float(loss_v) - float(loss)) > 1e-3, (float(loss_v), float(loss))
  # A broadcastable (B, H, 1) step mask works too and ignores the padded step.
  step_mask = jnp.ones(actions.shape[:2] + (1,), bool).at[:, -1].set(False)
  loss_s, _ = loss_fn(params, obs, actions, step_mask)
  loss_sp, _ = loss_fn(params, obs, actions.at[:, -1].add(50.0), step_mask)
  np.testing.assert_allclose(loss_sp, loss_s, rtol=1e-5, atol=1e-6)
