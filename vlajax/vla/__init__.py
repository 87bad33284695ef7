"""pi0-style Vision-Language-Action model.

config (presets tiny / small / pi0), masks (block-causal ar_mask rule), vision (SigLIP ViT),
gemma (multi-expert Gemma decoder), pi0 (the model, KV-cached flow sampling), batch (batch format and
conversion from ``vlajax.data``), synthetic (a learnable synthetic dataset), sharding (FSDP x data),
train (state, optimizer, freezing, train/eval steps), hf_import (PaliGemma safetensors),
tokenizer (local HuggingFace tokenizers), policy (``load_policy``: a checkpoint as an
observation -> action-chunk function, for ``vlajax.bridge``).
"""


def __getattr__(name):
  # Lazy, so that importing the package does not start JAX / read checkpoints machinery.
  if name == "load_policy":
    from vlajax.vla.policy import load_policy  # pylint: disable=import-outside-toplevel
    return load_policy
  raise AttributeError(f"module 'vlajax.vla' has no attribute {name!r}")
