"""Action chunks from trajectories and ACT-style temporal ensembling."""
import jax.numpy as jnp
import numpy as np

from vlajax.policies import chunking


def test_chunks_clamp_the_last_action_and_mask_it():
  actions = jnp.arange(5.0)[:, None] * jnp.array([[1.0, -1.0]])
  chunks, mask = chunking.chunk_trajectory(actions, horizon=3)
  assert chunks.shape == (5, 3, 2) and mask.shape == (5, 3)
  np.testing.assert_array_equal(chunks[1, :, 0], [1, 2, 3])
  np.testing.assert_array_equal(chunks[3, :, 0], [3, 4, 4])     # repeats the last action
  np.testing.assert_array_equal(mask[3], [True, True, False])
  np.testing.assert_array_equal(mask[4], [True, False, False])


def test_temporal_ensemble_weights_overlapping_predictions():
  horizon, alpha = 4, 0.5
  state = chunking.ensemble_init(horizon, 1)
  chunks = [jnp.array([[10.0], [11.0], [12.0], [13.0]]),    # predicted at t=0 for t=0..3
            jnp.array([[21.0], [22.0], [23.0], [24.0]]),    # predicted at t=1 for t=1..4
            jnp.array([[32.0], [33.0], [34.0], [35.0]])]    # predicted at t=2 for t=2..5
  state, a0 = chunking.ensemble_step(state, chunks[0], alpha)
  assert float(a0[0]) == 10.0
  state, a1 = chunking.ensemble_step(state, chunks[1], alpha)
  # Predictions for t=1: 11 (oldest, weight 1) and 21 (newer, weight e^-alpha).
  w = np.exp(-alpha)
  np.testing.assert_allclose(a1, [(11.0 + w * 21.0) / (1 + w)], rtol=1e-6)
  state, a2 = chunking.ensemble_step(state, chunks[2], alpha)
  ws = np.exp(-alpha * np.arange(3))
  np.testing.assert_allclose(a2, [(ws @ np.array([12.0, 22.0, 32.0])) / ws.sum()], rtol=1e-6)
  # Newest-first weighting flips which prediction dominates.
  _, b2 = chunking.ensemble_step(chunking.ensemble_step(chunking.ensemble_step(
      chunking.ensemble_init(horizon, 1), chunks[0], alpha, False)[0], chunks[1], alpha, False)[0],
      chunks[2], alpha, False)
  np.testing.assert_allclose(b2, [(ws @ np.array([32.0, 22.0, 12.0])) / ws.sum()], rtol=1e-6)


def test_ensemble_forgets_predictions_older_than_the_horizon():
  horizon = 2
  state = chunking.ensemble_init(horizon, 1)
  for value in (1.0, 2.0, 3.0):
    state, action = chunking.ensemble_step(state, jnp.full((horizon, 1), value), 0.0)
  np.testing.assert_allclose(action, [2.5])   # only the chunks from t-1 and t reach step t
