"""Analytic model FLOPs of the pi0-style VLA (for model FLOPs utilization).

Counts the multiply-adds of matmuls (2 FLOPs each) and attention score / value products of one
forward pass over one example; a training step costs 3x the forward (backward = 2x forward).
Attention over masked positions is counted, since it is computed.
"""
from __future__ import annotations

from vlajax.vla.config import GemmaConfig, Pi0Config


def _vision_flops(c: Pi0Config) -> float:
  v = c.vision
  n = v.num_tokens
  per_token = 2 * (v.patch_size ** 2 * 3 * v.width)                       # patch embedding
  per_token += v.depth * 2 * (4 * v.width ** 2 + 2 * v.width * v.mlp_dim)  # qkv, out, mlp
  per_token += v.depth * 2 * 2 * n * v.width                               # scores + weighted values
  per_token += 2 * v.width * c.llm.width                                   # projection into the LM
  return c.num_cameras * n * per_token


def _expert_token_flops(e: GemmaConfig) -> float:
  """Per-token, per-layer matmul FLOPs of one expert's projections and MLP."""
  return 2 * (2 * e.width * e.num_heads * e.head_dim + 2 * e.width * e.num_kv_heads * e.head_dim
              + 3 * e.width * e.mlp_dim)


def forward_flops(c: Pi0Config) -> float:
  """FLOPs of one forward pass (prefix + suffix together, as in training) for one example."""
  prefix, suffix = c.prefix_len, c.suffix_len
  total = prefix + suffix
  depth = c.llm.depth
  flops = _vision_flops(c)
  flops += depth * (prefix * _expert_token_flops(c.llm) + suffix * _expert_token_flops(c.expert))
  flops += depth * total * 2 * 2 * total * c.llm.num_heads * c.llm.head_dim   # joint attention
  flops += 2 * (c.state_dim * c.expert.width + c.action_horizon * (
      c.action_dim * c.expert.width + 3 * c.expert.width ** 2 + c.expert.width * c.action_dim))
  return float(flops)


def train_flops(c: Pi0Config) -> float:
  """FLOPs of one training example (forward + backward)."""
  return 3.0 * forward_flops(c)


def sample_flops(c: Pi0Config, num_steps: int = 10, kv_cache: bool = True) -> float:
  """FLOPs to sample one action chunk."""
  if not kv_cache:
    return num_steps * forward_flops(c)
  prefix, suffix, depth = c.prefix_len, c.suffix_len, c.llm.depth
  prefix_pass = _vision_flops(c) + depth * prefix * (_expert_token_flops(c.llm)
                                                     + 4 * prefix * c.llm.num_heads * c.llm.head_dim)
  suffix_pass = depth * suffix * (_expert_token_flops(c.expert)
                                  + 4 * (prefix + suffix) * c.llm.num_heads * c.llm.head_dim)
  return float(prefix_pass + num_steps * suffix_pass)
