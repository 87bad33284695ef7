"""The pi0 block-causal attention mask and positions."""
import jax.numpy as jnp
import numpy as np

from vlajax.vla import masks


def _pi0_layout(num_prefix_valid, num_prefix_pad, horizon):
  """prefix (valid then padding) + state + horizon action tokens, as pi0 builds them."""
  prefix_mask = [True] * num_prefix_valid + [False] * num_prefix_pad
  input_mask = jnp.array([prefix_mask + [True] * (1 + horizon)])
  ar_mask = jnp.array([False] * len(prefix_mask) + [True, True] + [False] * (horizon - 1))
  return input_mask, ar_mask


def test_mask_matches_block_structure():
  p_valid, p_pad, horizon = 5, 2, 4
  input_mask, ar_mask = _pi0_layout(p_valid, p_pad, horizon)
  m = np.asarray(masks.make_attention_mask(input_mask, ar_mask))[0]
  n_prefix = p_valid + p_pad
  state = n_prefix
  actions = slice(n_prefix + 1, n_prefix + 1 + horizon)
  prefix_valid = slice(0, p_valid)
  pad = slice(p_valid, n_prefix)
  assert m.shape == (n_prefix + 1 + horizon,) * 2
  # Prefix: bidirectional among valid prefix tokens, never sees the suffix.
  assert m[prefix_valid, prefix_valid].all()
  assert not m[prefix_valid, state].any() and not m[prefix_valid, actions].any()
  # State token: sees the valid prefix and itself, not the actions.
  assert m[state, prefix_valid].all() and m[state, state]
  assert not m[state, actions].any()
  # Action tokens: see the prefix, the state and each other (bidirectionally).
  assert m[actions, prefix_valid].all() and m[actions, state].all() and m[actions, actions].all()
  # Padding: masked as query and as key, everywhere.
  assert not m[pad, :].any() and not m[:, pad].any()


def test_suffix_mask_is_the_suffix_rows_of_the_full_mask():
  input_mask, ar_mask = _pi0_layout(4, 3, 5)
  full = np.asarray(masks.make_attention_mask(input_mask, ar_mask))[0]
  n_prefix = 7
  suffix = np.asarray(masks.suffix_attention_mask(input_mask[:, :n_prefix], input_mask[:, n_prefix:],
                                                  ar_mask[n_prefix:]))[0]
  np.testing.assert_array_equal(suffix, full[n_prefix:])


def test_positions_skip_padding_and_continue_after_the_prefix():
  prefix_mask = jnp.array([[True, True, False, True], [True, False, False, False]])
  np.testing.assert_array_equal(masks.positions_from_mask(prefix_mask), [[0, 1, 1, 2], [0, 0, 0, 0]])
  suffix_mask = jnp.ones((2, 3), bool)
  offset = prefix_mask.sum(1)
  np.testing.assert_array_equal(masks.positions_from_mask(suffix_mask, offset), [[3, 4, 5], [1, 2, 3]])
