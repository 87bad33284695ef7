"""pi0-style Vision-Language-Action model.

config (presets tiny / small / pi0), masks (block-causal ar_mask rule), vision (SigLIP ViT),
gemma (multi-expert Gemma decoder), pi0 (the model, KV-cached flow sampling), batch (batch format and
conversion from ``vlajax.data``), synthetic (a learnable synthetic dataset), sharding (FSDP x data),
train (state, optimizer, freezing, train/eval steps), hf_import (PaliGemma safetensors),
tokenizer (local HuggingFace tokenizers).
"""
