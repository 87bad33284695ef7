"""A synthetic, learnable VLA dataset for tests, smoke runs and benchmarks.

Each example has a random image (a coloured square on a random background), an instruction of random
token ids, a random state, and an action chunk that is a fixed smooth function of the state, the
square's colour and the first instruction token:

  actions[h] = tanh(feature @ W + (h + 1) / H * (feature @ V))

with ``W, V`` drawn from ``task_seed`` (shared by train and held-out splits) and the examples drawn
from ``seed``. Batches are deterministic functions of the step number, so a data position is one int.
With ``text_targets`` the examples carry a ``text_target_mask`` marking the instruction's continuation
(tokens after its first two) for the co-training text loss.
"""
from __future__ import annotations

import numpy as np

from vlajax.vla.config import Pi0Config


class SyntheticVLADataset:
  """``num_examples`` fixed examples; ``batch(step, batch_size)`` walks reshuffled epochs."""

  def __init__(self, config: Pi0Config, num_examples: int, seed: int = 0, task_seed: int = 1234,
               pad_action_dims: int = 0, text_targets: bool = False):
    c = config
    rng = np.random.default_rng(seed)
    task = np.random.default_rng(task_seed)
    n, s = num_examples, c.vision.image_size
    self.num_examples = n
    self.seed = seed
    colour = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    images = np.broadcast_to(rng.uniform(-0.2, 0.2, (n, 1, 1, 1, 3)), (n, c.num_cameras, s, s, 3)).copy()
    lo, hi = s // 4, s // 4 + s // 2
    images[:, :, lo:hi, lo:hi, :] = colour[:, None, None, None, :]
    lengths = rng.integers(2, c.max_token_len + 1, n)
    token_mask = np.arange(c.max_token_len)[None, :] < lengths[:, None]
    tokens = np.where(token_mask, rng.integers(1, c.vocab_size, (n, c.max_token_len)), 0).astype(np.int32)
    state = rng.normal(size=(n, c.state_dim)).astype(np.float32)
    token_feature = (tokens[:, :1] / c.vocab_size * 2 - 1).astype(np.float32)
    feature = np.concatenate([state, colour, token_feature], axis=1)
    real_dims = c.action_dim - pad_action_dims
    w = task.normal(size=(feature.shape[1], real_dims)) / np.sqrt(feature.shape[1])
    v = task.normal(size=(feature.shape[1], real_dims)) / np.sqrt(feature.shape[1])
    ramp = (np.arange(c.action_horizon) + 1.0) / c.action_horizon
    actions = np.tanh((feature @ w)[:, None, :] + ramp[None, :, None] * (feature @ v)[:, None, :])
    dim_mask = np.zeros((n, c.action_dim), bool)
    dim_mask[:, :real_dims] = True
    actions = np.concatenate([actions, np.zeros((n, c.action_horizon, pad_action_dims))], axis=2)
    self.examples = {
        "images": images.astype(np.float32), "image_mask": np.ones((n, c.num_cameras), bool),
        "tokens": tokens, "token_mask": token_mask, "state": state,
        "actions": actions.astype(np.float32), "action_mask": np.ones((n, c.action_horizon), bool),
        "action_dim_mask": dim_mask,
    }
    if text_targets:   # the instruction's continuation after its first two tokens
      self.examples["text_target_mask"] = token_mask & (np.arange(c.max_token_len)[None, :] >= 2)

  def indices(self, step: int, batch_size: int) -> np.ndarray:
    """Example indices of batch ``step``: consecutive slices of per-epoch permutations."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
      epoch, offset = divmod(start + len(out), self.num_examples)
      perm = np.random.default_rng((self.seed, epoch)).permutation(self.num_examples)
      out.extend(perm[offset:offset + batch_size - len(out)].tolist())
    return np.asarray(out)

  def batch(self, step: int, batch_size: int, process_index: int = 0, process_count: int = 1) -> dict:
    """The rows of global batch ``step`` that belong to this process (numpy, host-local)."""
    idx = self.indices(step, batch_size)
    per_host = batch_size // process_count
    idx = idx[process_index * per_host:(process_index + 1) * per_host]
    return {k: v[idx] for k, v in self.examples.items()}

  def all(self) -> dict:
    return dict(self.examples)
