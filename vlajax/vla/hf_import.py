"""Import PaliGemma (SigLIP + Gemma) weights from a local HuggingFace-layout checkpoint directory.

Reads ``config.json`` and ``model.safetensors`` (or the shards listed in
``model.safetensors.index.json``) directly with ``safetensors``; no transformers, no network.
Accepted name prefixes: the legacy Hub layout (``language_model.model.*``,
``vision_tower.vision_model.*``, ``multi_modal_projector.linear.*``), transformers-5
``save_pretrained`` output (``vision_tower.*`` without ``vision_model``) and the in-memory
``model.language_model.*`` / ``model.vision_tower.*`` names.

Mapping (HF -> ours; L layers are stacked on a leading axis):
  patch_embedding.weight (D, 3, p, p)          -> vision/embedding/kernel (p, p, 3, D)
  position_embedding.weight (N, D)             -> vision/pos_embedding (1, N, D)
  SigLIP {q,k,v}_proj.weight (D, D)            -> vision/encoder/attn_{query,key,value}/kernel (L, D, heads, Dh)
  SigLIP out_proj.weight (D, D)                -> vision/encoder/attn_out/kernel (L, heads, Dh, D)
  SigLIP fc1/fc2, projector (out, in)          -> kernels (in, out)
  Gemma q_proj (N*H, D) -> attn_0/q (L, N, D, H); k_proj, v_proj (K*H, D) -> (L, K, D, H)
  Gemma o_proj (D, N*H) -> attn_0/o (L, N, H, D); gate/up (F, D) -> (L, D, F); down (D, F) -> (L, F, D)
  norms unchanged (Gemma's ``1 + scale`` convention is the same on both sides).
Only the language model (expert 0) and the vision tower are imported; the action expert and the
action/state projections keep their initialization.
"""
from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Callable

import numpy as np

from vlajax.vla.config import GemmaConfig, Pi0Config, VisionConfig

V = "vision_tower."
LM = "language_model."


def _t(x):
  return np.swapaxes(x, -1, -2)


def _entries(config: Pi0Config) -> list[tuple[str, tuple[str, ...], Callable, Callable, bool]]:
  """(hf name, our path, hf->ours, ours->hf, per-layer) for every imported tensor."""
  vc, lc = config.vision, config.llm
  vh, vdh = vc.num_heads, vc.width // vc.num_heads
  n, k, h, d = lc.num_heads, lc.num_kv_heads, lc.head_dim, lc.width
  enc = ("params", "vision", "encoder")
  dec = ("params", "decoder", "layers")
  e: list = []
  add = lambda *a: e.append(a)
  ident = lambda x: x
  # SigLIP embeddings and final norm.
  add(V + "embeddings.patch_embedding.weight", ("params", "vision", "embedding", "kernel"),
      lambda x: x.transpose(2, 3, 1, 0), lambda x: x.transpose(3, 2, 0, 1), False)
  add(V + "embeddings.patch_embedding.bias", ("params", "vision", "embedding", "bias"), ident, ident, False)
  add(V + "embeddings.position_embedding.weight", ("params", "vision", "pos_embedding"),
      lambda x: x[None], lambda x: x[0], False)
  add(V + "post_layernorm.weight", ("params", "vision", "encoder_norm", "scale"), ident, ident, False)
  add(V + "post_layernorm.bias", ("params", "vision", "encoder_norm", "bias"), ident, ident, False)
  add("multi_modal_projector.linear.weight", ("params", "vision", "head", "kernel"), _t, _t, False)
  add("multi_modal_projector.linear.bias", ("params", "vision", "head", "bias"), ident, ident, False)
  # SigLIP encoder layers.
  lay = V + "encoder.layers.{i}."
  for hf, ours in (("layer_norm1", "ln_attn"), ("layer_norm2", "ln_mlp")):
    add(lay + hf + ".weight", enc + (ours, "scale"), ident, ident, True)
    add(lay + hf + ".bias", enc + (ours, "bias"), ident, ident, True)
  for hf, ours in (("q_proj", "attn_query"), ("k_proj", "attn_key"), ("v_proj", "attn_value")):
    add(lay + f"self_attn.{hf}.weight", enc + (ours, "kernel"),
        lambda x: _t(x).reshape(x.shape[1], vh, vdh), lambda x: _t(x.reshape(x.shape[0], -1)), True)
    add(lay + f"self_attn.{hf}.bias", enc + (ours, "bias"),
        lambda x: x.reshape(vh, vdh), lambda x: x.reshape(-1), True)
  add(lay + "self_attn.out_proj.weight", enc + ("attn_out", "kernel"),
      lambda x: _t(x).reshape(vh, vdh, x.shape[0]), lambda x: _t(x.reshape(-1, x.shape[-1])), True)
  add(lay + "self_attn.out_proj.bias", enc + ("attn_out", "bias"), ident, ident, True)
  for hf, ours in (("fc1", "mlp_fc1"), ("fc2", "mlp_fc2")):
    add(lay + f"mlp.{hf}.weight", enc + (ours, "kernel"), _t, _t, True)
    add(lay + f"mlp.{hf}.bias", enc + (ours, "bias"), ident, ident, True)
  # Gemma.
  add(LM + "embed_tokens.weight", ("params", "decoder", "embedder", "input_embedding"), ident, ident, False)
  add(LM + "norm.weight", ("params", "decoder", "final_norm_0", "scale"), ident, ident, False)
  lay = LM + "layers.{i}."
  add(lay + "input_layernorm.weight", dec + ("pre_attn_norm_0", "scale"), ident, ident, True)
  add(lay + "post_attention_layernorm.weight", dec + ("pre_mlp_norm_0", "scale"), ident, ident, True)
  add(lay + "self_attn.q_proj.weight", dec + ("attn_0", "q"),
      lambda x: x.reshape(n, h, d).transpose(0, 2, 1), lambda x: x.transpose(0, 2, 1).reshape(n * h, d), True)
  for name in ("k", "v"):
    add(lay + f"self_attn.{name}_proj.weight", dec + ("attn_0", name),
        lambda x: x.reshape(k, h, d).transpose(0, 2, 1), lambda x: x.transpose(0, 2, 1).reshape(k * h, d), True)
  add(lay + "self_attn.o_proj.weight", dec + ("attn_0", "o"),
      lambda x: _t(x).reshape(n, h, d), lambda x: _t(x.reshape(n * h, d)), True)
  add(lay + "mlp.gate_proj.weight", dec + ("mlp_0", "gate"), _t, _t, True)
  add(lay + "mlp.up_proj.weight", dec + ("mlp_0", "up"), _t, _t, True)
  add(lay + "mlp.down_proj.weight", dec + ("mlp_0", "down"), _t, _t, True)
  return e


_IGNORED = (re.compile(r"^vision_tower\.head\."), re.compile(r"^lm_head\."))


def normalize_name(name: str) -> str:
  """Maps any accepted HF naming onto the legacy-style names used in the mapping table."""
  if name.startswith("model."):
    name = name[len("model."):]
  name = name.replace("vision_tower.vision_model.", "vision_tower.")
  if name.startswith("language_model.model."):
    name = "language_model." + name[len("language_model.model."):]
  if name.startswith("language_model.lm_head."):
    name = "lm_head." + name[len("language_model.lm_head."):]
  return name


def read_safetensors(ckpt_dir: str | pathlib.Path) -> dict[str, np.ndarray]:
  """All tensors of a checkpoint directory as float32 numpy arrays, keyed by normalized name."""
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel
  ckpt_dir = pathlib.Path(ckpt_dir)
  index = ckpt_dir / "model.safetensors.index.json"
  if index.exists():
    files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
  elif (ckpt_dir / "model.safetensors").exists():
    files = ["model.safetensors"]
  else:
    raise FileNotFoundError(f"{ckpt_dir} has neither model.safetensors nor model.safetensors.index.json")
  tensors = {}
  for fname in files:
    with safe_open(str(ckpt_dir / fname), framework="flax") as f:
      for key in f.keys():
        tensors[normalize_name(key)] = np.asarray(f.get_tensor(key), dtype=np.float32)
  return tensors


def config_from_hf(ckpt_dir: str | pathlib.Path, expert: GemmaConfig | None = None, **overrides) -> Pi0Config:
  """A ``Pi0Config`` whose vision tower and language model match ``ckpt_dir/config.json``.

  The action expert defaults to a quarter-width copy of the language model's attention shape.
  """
  cfg = json.loads((pathlib.Path(ckpt_dir) / "config.json").read_text())
  vc, tc = cfg["vision_config"], cfg["text_config"]
  vision = VisionConfig(width=vc["hidden_size"], depth=vc["num_hidden_layers"], mlp_dim=vc["intermediate_size"],
                        num_heads=vc["num_attention_heads"], patch_size=vc["patch_size"],
                        image_size=vc["image_size"])
  head_dim = tc.get("head_dim") or tc["hidden_size"] // tc["num_attention_heads"]
  llm = GemmaConfig(width=tc["hidden_size"], depth=tc["num_hidden_layers"], mlp_dim=tc["intermediate_size"],
                    num_heads=tc["num_attention_heads"], num_kv_heads=tc.get("num_key_value_heads", 1),
                    head_dim=head_dim)
  if expert is None:
    expert = GemmaConfig(width=max(llm.width // 2, 8), depth=llm.depth, mlp_dim=max(llm.mlp_dim // 4, 8),
                         num_heads=llm.num_heads, num_kv_heads=llm.num_kv_heads, head_dim=llm.head_dim)
  rope = tc.get("rope_parameters", {}).get("rope_theta", tc.get("rope_theta", 10_000.0))
  return Pi0Config(vision=vision, llm=llm, expert=expert, vocab_size=tc.get("vocab_size", cfg.get("vocab_size")),
                   rope_max_wavelength=float(rope)).replace(**overrides)


def _get(tree: Any, path: tuple[str, ...]):
  for p in path:
    tree = tree[p]
  return tree


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for p in path[:-1]:
    tree = tree[p]
  tree[path[-1]] = value


def _convert(x: np.ndarray, fn: Callable) -> np.ndarray | None:
  """``fn(x)``, or None when ``x`` cannot take the expected shape."""
  try:
    return fn(x)
  except ValueError:
    return None


def hf_to_params(tensors: dict[str, np.ndarray], params: Any, config: Pi0Config,
                 strict: bool = True) -> dict:
  """Returns a copy of ``params`` (nested dicts) with every mapped tensor replaced by its import.

  Raises KeyError naming missing tensors and ValueError naming mis-shaped ones (with both shapes).
  With ``strict``, unmapped tensors other than the SigLIP pooling head and ``lm_head`` also raise.
  """
  out = _copy(params)
  missing, misshaped, used = [], [], set()
  for hf_name, path, to_ours, _, per_layer in _entries(config):
    target = np.asarray(_get(params, path))
    names = [hf_name.format(i=i) for i in range(target.shape[0])] if per_layer else [hf_name]
    absent = [nm for nm in names if nm not in tensors]
    if absent:
      missing += absent
      continue
    used.update(names)
    parts = [_convert(tensors[nm], to_ours) for nm in names]
    value = None
    if all(p is not None for p in parts):
      value = np.stack(parts) if per_layer else parts[0]
    if value is None or value.shape != target.shape:
      misshaped.append(f"{names[0]} has shape {tuple(tensors[names[0]].shape)} but "
                       f"{'/'.join(path)} expects {target.shape}{' (stacked over layers)' if per_layer else ''}")
      continue
    _set(out, path, value.astype(target.dtype))
  if missing:
    raise KeyError(f"HF checkpoint is missing {len(missing)} tensor(s): {missing[:8]}"
                   f"{' ...' if len(missing) > 8 else ''}")
  if misshaped:
    raise ValueError(f"HF checkpoint has {len(misshaped)} mis-shaped tensor(s): {misshaped[:8]}")
  extra = sorted(k for k in tensors if k not in used and not any(p.match(k) for p in _IGNORED))
  if strict and extra:
    raise KeyError(f"HF checkpoint has {len(extra)} tensor(s) with no place in the model: {extra[:8]}")
  return out


def _copy(tree):
  if hasattr(tree, "items"):
    return {k: _copy(v) for k, v in tree.items()}
  return tree


def legacy_name(name: str) -> str:
  """Our normalized name -> the legacy Hub name (``language_model.model.*``, ``vision_tower.vision_model.*``)."""
  if name.startswith(LM):
    return "language_model.model." + name[len(LM):]
  if name.startswith(V):
    return "vision_tower.vision_model." + name[len(V):]
  return name


def params_to_hf(params: Any, config: Pi0Config) -> dict[str, np.ndarray]:
  """Inverse of ``hf_to_params``: our vision tower + language model as legacy-layout HF tensors."""
  out = {}
  for hf_name, path, _, to_hf, per_layer in _entries(config):
    value = np.asarray(_get(params, path), np.float32)
    if per_layer:
      for i in range(value.shape[0]):
        out[legacy_name(hf_name.format(i=i))] = np.ascontiguousarray(to_hf(value[i]))
    else:
      out[legacy_name(hf_name)] = np.ascontiguousarray(to_hf(value))
  return out


def load_paligemma(ckpt_dir: str | pathlib.Path, params: Any, config: Pi0Config, strict: bool = True) -> dict:
  """Reads ``ckpt_dir`` and returns ``params`` with the PaliGemma weights in place (numpy leaves)."""
  return hf_to_params(read_safetensors(ckpt_dir), params, config, strict=strict)
