"""One constructor for every imitation action head (protocol in ``vlajax.policies.base``).

``make_head(kind, action_horizon, action_dim, ...)`` with kind ``"regression"``
(``RegressionPolicy``), ``"act"`` (``ACTPolicy``), ``"diffusion"`` (``DiffusionPolicy``) or
``"flow"`` (``flow_matching.make_flow_policy``); extra keyword arguments go to that constructor.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from vlajax.policies.act import ACTPolicy
from vlajax.policies.diffusion import DiffusionPolicy
from vlajax.policies.flow_matching import make_flow_policy
from vlajax.policies.regression import RegressionPolicy

KINDS = ("regression", "act", "diffusion", "flow")


def make_head(kind: str, action_horizon: int, action_dim: int, *, state_key: str | None = "proprio",
              image_keys: Sequence[str] = (), **kwargs) -> nn.Module:
  """Builds an action head producing (B, action_horizon, action_dim) chunks.

  Args:
    kind: one of ``KINDS``.
    action_horizon: H, the chunk length.
    action_dim: A, the action size.
    state_key: observation field with the state (B, S) or (B, T, S); None for none.
    image_keys: observation fields with uint8 images (B, [T,] H, W, 3).
    **kwargs: fields of the head (e.g. ``width``, ``d_model``, ``channels``, ``augment``).
  Returns:
    An unbound Flax module; ``init`` it with ``(obs, actions, rng)`` and call its
    ``compute_loss`` / ``sample_actions`` through ``apply(..., method=...)``.
  Raises:
    ValueError: for an unknown kind, or ``augment=True`` for ``"flow"`` (which has no augmentation).
  """
  image_keys = tuple(image_keys)
  common = dict(action_dim=action_dim, action_horizon=action_horizon, state_key=state_key,
                image_keys=image_keys)
  if kind == "regression":
    return RegressionPolicy(**common, **kwargs)
  if kind == "act":
    return ACTPolicy(**common, **kwargs)
  if kind == "diffusion":
    return DiffusionPolicy(**common, **kwargs)
  if kind == "flow":
    if kwargs.pop("augment", False):
      raise ValueError("the flow head (flow_matching.FlowMatchingPolicy) has no image augmentation; "
                       "pass augment=False")
    return make_flow_policy(action_horizon, action_dim, state_key=state_key, image_keys=image_keys,
                            **kwargs)
  raise ValueError(f"unknown action head kind {kind!r}; known kinds: {', '.join(KINDS)}")
