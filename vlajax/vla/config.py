"""Model configuration dataclasses and the size presets of the pi0-style VLA.

Three presets:
  * ``tiny``  -- a few hundred thousand parameters, 28x28 images (4 tokens/camera); for CPU tests.
  * ``small`` -- SmolVLA scale (~0.4B): ViT-B/14-like vision encoder, a 960-wide 16-layer LM with
                 grouped-query attention and a 720-wide action expert.
  * ``pi0``   -- PaliGemma-2B backbone (SigLIP So400m/14 + Gemma 2B) plus the ~300M Gemma action
                 expert: ~3.3B parameters.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """SigLIP-style ViT. ``image_size // patch_size`` squared tokens per image."""
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  patch_size: int = 14
  image_size: int = 224

  @property
  def num_tokens(self) -> int:
    return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class GemmaConfig:
  """One expert of the Gemma-style decoder (multi-query / grouped-query attention)."""
  width: int
  depth: int
  mlp_dim: int
  num_heads: int
  num_kv_heads: int
  head_dim: int


@dataclasses.dataclass(frozen=True)
class Pi0Config:
  """Full VLA: vision encoder, language model (expert 0) and action expert (expert 1).

  The two experts must share depth, head count, kv-head count and head_dim: they attend jointly.
  """
  vision: VisionConfig
  llm: GemmaConfig
  expert: GemmaConfig
  vocab_size: int
  action_dim: int = 32
  action_horizon: int = 50
  state_dim: int = 32
  max_token_len: int = 48
  num_cameras: int = 1
  dtype: str = "float32"   # compute dtype; parameters stay float32
  text_loss_weight: float = 0.0   # co-training next-token loss on text targets (0 = off)
  rope_max_wavelength: float = 10_000.0
  time_min_period: float = 4e-3
  time_max_period: float = 4.0

  def __post_init__(self):
    for field in ("depth", "num_heads", "num_kv_heads", "head_dim"):
      a, b = getattr(self.llm, field), getattr(self.expert, field)
      if a != b:
        raise ValueError(f"llm.{field}={a} and expert.{field}={b} must match: the experts share attention")
    if self.llm.num_heads % self.llm.num_kv_heads:
      raise ValueError(f"num_heads={self.llm.num_heads} is not a multiple of num_kv_heads={self.llm.num_kv_heads}")
    if self.vision.image_size % self.vision.patch_size:
      raise ValueError(f"image_size={self.vision.image_size} not divisible by patch_size={self.vision.patch_size}")

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def prefix_len(self) -> int:
    return self.num_cameras * self.vision.num_tokens + self.max_token_len

  @property
  def suffix_len(self) -> int:
    return 1 + self.action_horizon

  def replace(self, **kwargs) -> "Pi0Config":
    return dataclasses.replace(self, **kwargs)


def tiny(**overrides) -> Pi0Config:
  """CPU test size: two 28x28 cameras with patch 14 (4 tokens each), 2 decoder layers, 8-dim actions."""
  cfg = Pi0Config(
      vision=VisionConfig(width=32, depth=1, mlp_dim=64, num_heads=2, patch_size=14, image_size=28),
      llm=GemmaConfig(width=32, depth=2, mlp_dim=64, num_heads=2, num_kv_heads=1, head_dim=16),
      expert=GemmaConfig(width=24, depth=2, mlp_dim=48, num_heads=2, num_kv_heads=1, head_dim=16),
      vocab_size=64, action_dim=8, action_horizon=4, state_dim=8, max_token_len=6, num_cameras=2)
  return cfg.replace(**overrides)


def small(**overrides) -> Pi0Config:
  """SmolVLA scale (~0.4B): ViT-B/14, SmolLM2-360M-shaped LM, 0.75x-wide action expert."""
  cfg = Pi0Config(
      vision=VisionConfig(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=14, image_size=224),
      llm=GemmaConfig(width=960, depth=16, mlp_dim=2560, num_heads=15, num_kv_heads=5, head_dim=64),
      expert=GemmaConfig(width=720, depth=16, mlp_dim=2048, num_heads=15, num_kv_heads=5, head_dim=64),
      vocab_size=49_152, action_dim=32, action_horizon=50, state_dim=32, max_token_len=48, num_cameras=1)
  return cfg.replace(**overrides)


def pi0(**overrides) -> Pi0Config:
  """PaliGemma-2B (SigLIP So400m/14 + gemma_2b) + gemma_300m action expert, ~3.3B parameters."""
  cfg = Pi0Config(
      vision=VisionConfig(width=1152, depth=27, mlp_dim=4304, num_heads=16, patch_size=14, image_size=224),
      llm=GemmaConfig(width=2048, depth=18, mlp_dim=16_384, num_heads=8, num_kv_heads=1, head_dim=256),
      expert=GemmaConfig(width=1024, depth=18, mlp_dim=4096, num_heads=8, num_kv_heads=1, head_dim=256),
      vocab_size=257_152, action_dim=32, action_horizon=50, state_dim=32, max_token_len=48, num_cameras=1)
  return cfg.replace(**overrides)


PRESETS = {"tiny": tiny, "small": small, "pi0": pi0}


def get_preset(name: str, **overrides) -> Pi0Config:
  """Returns the named preset with dataclass-field overrides; unknown names raise a KeyError."""
  if name not in PRESETS:
    raise KeyError(f"unknown VLA preset {name!r}; choose one of {sorted(PRESETS)}")
  return PRESETS[name](**overrides)


# Fields of the training config's ``model`` section that override the preset when not -1.
OVERRIDABLE = ("action_dim", "action_horizon", "state_dim", "max_token_len", "num_cameras")


def from_model_section(model) -> Pi0Config:
  """The model of a ``train_vla`` config's ``model`` section (a ConfigDict or the plain dict saved
  in checkpoint metadata): the preset ``model["preset"]`` with its dtype and the overridable fields
  that are not -1."""
  for key in ("preset", "dtype"):
    if key not in model:
      raise KeyError(f"model config lacks {key!r} (has {sorted(model.keys())})")
  overrides = {k: model[k] for k in OVERRIDABLE if k in model and model[k] != -1}
  if "text_loss_weight" in model:
    overrides["text_loss_weight"] = float(model["text_loss_weight"])
  return get_preset(model["preset"], dtype=model["dtype"], **overrides)
