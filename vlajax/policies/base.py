"""The action-head protocol shared by imitation policies and the VLA.

An action head is a Flax module with two methods, used through ``module.apply(params, ..., method=)``:

  compute_loss(obs, actions (B, H, A), rng, mask=None) -> (scalar loss, per-example (B,) loss)
  sample_actions(obs, rng, ...) -> (B, H, A) action chunk

``mask`` is broadcastable to (B, H, A) and is False on padded steps / dims. Flow matching
(``vlajax.policies.flow_matching``) implements it; diffusion (DDPM/DDIM), ACT (CVAE) and plain MSE
heads slot in the same way, and the training loop only calls these two methods.
"""
from __future__ import annotations

from typing import Any, Protocol

import jax


class ActionHead(Protocol):

  def compute_loss(self, obs: Any, actions: jax.Array, rng: jax.Array, mask: jax.Array | None = None):
    ...

  def sample_actions(self, obs: Any, rng: jax.Array, *args, **kwargs) -> jax.Array:
    ...
