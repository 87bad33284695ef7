"""Executing action chunks: the one implementation behind every chunk executor.

A chunk policy predicts H = ``action_horizon`` actions for the control ticks s .. s+H-1 from the
observation of tick s. An executor keeps the *pending* actions of the coming ticks, executes (pops)
the first one every tick, asks for a new chunk when few are left (`needs_plan`) and merges the new
chunk into what is pending (`merge`). Two executors run this module's maths:

* `vlajax.bridge.executor.ActionQueue` (numpy) inside the asynchronous `ChunkExecutor` on a robot:
  a chunk arrives one inference latency after the tick it was planned from, and the actions of the
  ticks that passed meanwhile are dropped before the merge;
* `vlajax.policies.chunking.execute_chunks` (jax.numpy) inside a jitted closed-loop rollout: zero
  latency, a batch of envs that all plan on the same ticks.

With zero latency the two give the same action sequence (tests/test_policies_execution.py).

The pending actions are a fixed-capacity buffer `Pending(total f[..., C, A], weight f[..., C],
count i[..., C])`: entry k is the tick k steps ahead, its action ``total / weight``, ``count`` the
number of predictions merged into it (0: empty; the filled entries are the first ones). Every
function takes the array module, ``xp=numpy`` (the default) or ``jax.numpy``; this module does not
import jax.

Merge rules (`MergeRule.merge`) for a new chunk ``a[0:n]`` meant for pending entries 0..n-1:

  replace    the new chunk replaces everything pending.
  ensemble   temporal ensembling (ACT; seed 001 section 06): a tick's action is the weighted mean of
             every prediction made for it. ``favor="old"`` (ACT's implementation): the i-th
             prediction of a tick (i = 0 the oldest) weighs exp(-alpha * i); ``favor="new"``: the
             newest weighs 1 and each older one exp(-alpha) less per newer prediction. alpha = 0 is
             the plain mean.
  crossfade  over the first ``crossfade_steps`` ticks that have both, a linear blend from the
             pending action to the new one ((k + 1) / (steps + 1) of the new one at entry k); the
             new action alone after them.

Execute K of H: a new chunk is planned when fewer than ``g * H`` actions are pending
(`needs_plan`, the executor's refill threshold g); `refill_threshold(H, K)` is the g that plans
once K actions of each chunk ran (H - K left; K = H: when the queue is empty). With "replace" the
next chunk then replaces the H - K unexecuted actions; with "ensemble" they are averaged with it.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np

MERGES = ("replace", "ensemble", "crossfade")
FAVORS = ("old", "new")


@dataclasses.dataclass(frozen=True)
class MergeRule:
  """How a new chunk is merged with the pending actions (module doc)."""
  merge: str = "replace"
  alpha: float = 0.01         # ensemble: weights exp(-alpha * i)
  favor: str = "old"          # ensemble: "old" (ACT) or "new"
  crossfade_steps: int = 4    # crossfade: ticks blended

  def validate(self) -> "MergeRule":
    if self.merge not in MERGES:
      raise ValueError(f"merge must be ensemble|crossfade|replace, got '{self.merge}'")
    if self.favor not in FAVORS:
      raise ValueError(f"ensemble_favor must be old|new, got '{self.favor}'")
    if not self.alpha >= 0.0:
      raise ValueError(f"ensemble_alpha must be >= 0, got {self.alpha}")
    if self.crossfade_steps < 0:
      raise ValueError(f"crossfade_steps must be >= 0, got {self.crossfade_steps}")
    return self


class Pending(NamedTuple):
  """Pending actions (module doc); a pytree, so it can be a jitted rollout's carry."""
  total: Any    # f[..., C, A]: weighted sum of the predictions for each pending tick
  weight: Any   # f[..., C]: their total weight
  count: Any    # i[..., C]: how many predictions were merged (0: empty)


def empty(capacity: int, action_size: int, batch_shape: tuple[int, ...] = (), xp=np,
          dtype=None) -> Pending:
  """No pending actions, room for `capacity` ticks."""
  dtype = dtype or (np.float64 if xp is np else xp.float32)
  shape = tuple(batch_shape) + (capacity,)
  return Pending(xp.zeros(shape + (action_size,), dtype), xp.zeros(shape, dtype),
                 xp.zeros(shape, xp.int32))


def length(pending: Pending, xp=np):
  """The number of pending actions (per batch element)."""
  return xp.sum(pending.count > 0, axis=-1)


def merge(pending: Pending, actions, rule: MergeRule, xp=np) -> Pending:
  """Merges `actions` f[..., n, A] (n <= the capacity), the new predictions for the next n ticks,
  into `pending` by `rule` (module doc)."""
  capacity, n = pending.weight.shape[-1], actions.shape[-2]
  if n > capacity:
    raise ValueError(f"a chunk of {n} actions does not fit {capacity} pending ticks")
  actions = xp.asarray(actions, pending.total.dtype)
  if n < capacity:
    pad = xp.zeros(actions.shape[:-2] + (capacity - n, actions.shape[-1]), actions.dtype)
    actions = xp.concatenate([actions, pad], axis=-2)
  index = xp.arange(capacity)
  new = index < n                  # [C]: entries the chunk predicts
  old = pending.count > 0          # [..., C]: entries that hold earlier predictions
  one = xp.ones_like(pending.weight)
  if rule.merge == "replace":
    return Pending(xp.where(new[:, None], actions, 0.0),
                   xp.where(new, one, xp.zeros_like(pending.weight)),
                   xp.where(new, xp.ones_like(pending.count), xp.zeros_like(pending.count)))
  if rule.merge == "ensemble":
    decay = math.exp(-rule.alpha)
    if rule.favor == "old":   # the i-th prediction of a tick (i = count) weighs decay ** i
      w = decay ** pending.count.astype(pending.weight.dtype)
      total, weight = pending.total + w[..., None] * actions, pending.weight + w
    else:                     # the newest weighs 1, each older one decays once more
      total, weight = decay * pending.total + actions, decay * pending.weight + 1.0
    count = pending.count + 1
  else:   # crossfade
    overlap = xp.sum(old & new, axis=-1, keepdims=True)
    fade = xp.minimum(overlap, rule.crossfade_steps)
    w = xp.minimum((index + 1.0) / (fade + 1.0), 1.0)[..., None]
    current = pending.total / xp.where(old, pending.weight, one)[..., None]
    total = xp.where(old[..., None], (1.0 - w) * current + w * actions, actions)
    weight, count = one, xp.ones_like(pending.count)
  return Pending(xp.where(new[:, None], total, pending.total), xp.where(new, weight, pending.weight),
                 xp.where(new, count, pending.count))


def pop(pending: Pending, xp=np) -> tuple[Any, Pending]:
  """(the first pending action f[..., A], the rest moved up one tick). The caller makes sure one is
  pending (an empty entry's action is 0 / 0)."""
  action = pending.total[..., 0, :] / pending.weight[..., 0, None]
  return action, Pending(_shift(pending.total, -2, xp), _shift(pending.weight, -1, xp),
                         _shift(pending.count, -1, xp))


def _shift(x, axis: int, xp):
  """`x` moved up one entry along `axis`, the last entry emptied (zeros)."""
  x = xp.moveaxis(x, axis, 0)
  return xp.moveaxis(xp.concatenate([x[1:], xp.zeros_like(x[:1])]), 0, axis)


def refill_threshold(horizon: int, execute: int) -> float:
  """The refill threshold g that executes `execute` (K) actions of each `horizon`-action (H) chunk:
  `needs_plan` is first true with H - K actions pending: g = (H - K + 0.5) / H."""
  if not 1 <= execute <= horizon:
    raise ValueError(f"execute ({execute}) must be in 1..horizon ({horizon})")
  return (horizon - execute + 0.5) / horizon


def needs_plan(pending_count, horizon: int, threshold: float):
  """Whether an executor with `pending_count` actions pending asks for a new chunk: fewer than
  ``threshold * horizon`` (the executor's refill threshold g)."""
  return pending_count < threshold * horizon
