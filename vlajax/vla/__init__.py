"""pi0-style Vision-Language-Action model.

config (presets tiny / small / pi0), masks (block-causal ar_mask rule), vision (SigLIP ViT),
gemma (multi-expert Gemma decoder), pi0 (the model, KV-cached flow sampling), batch (batch format,
conversion from ``vlajax.data`` and to the action-head batch), synthetic (a learnable synthetic
dataset), data_sources (resumable training sources), train (the VLA's hooks into
``vlajax.imitation``'s trainer: freezing, the loss with its parts, the sampler; the trainer, FSDP
sharding and loop are ``vlajax.imitation``'s), hf_import (PaliGemma safetensors),
tokenizer (local HuggingFace tokenizers), policy (``load_policy``: a checkpoint as an
observation -> action-chunk function, for ``vlajax.bridge``; ``load_batched_policy``: the batched,
jittable variant for closed-loop rollouts).
"""


def __getattr__(name):
  # Lazy, so that importing the package does not start JAX / read checkpoints machinery.
  if name in ("load_policy", "load_batched_policy"):
    from vlajax.vla import policy  # pylint: disable=import-outside-toplevel
    return getattr(policy, name)
  raise AttributeError(f"module 'vlajax.vla' has no attribute {name!r}")
