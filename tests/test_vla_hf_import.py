"""HuggingFace PaliGemma checkpoint import (safetensors + config.json) and the local tokenizer."""
import json

import jax
import numpy as np
import pytest

from vlajax.vla import batch as batch_lib
from vlajax.vla import hf_import
from vlajax.vla.pi0 import Pi0

HF_CONFIG = {
    "architectures": ["PaliGemmaForConditionalGeneration"], "model_type": "paligemma",
    "image_token_index": 99, "vocab_size": 100, "projection_dim": 48, "hidden_size": 48,
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 28, "patch_size": 14,
                      "projection_dim": 48, "vision_use_head": False},
    "text_config": {"model_type": "gemma", "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100,
                    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}},
}


def _hf_shapes():
  """Legacy Hub layout names and shapes of the tiny PaliGemma above."""
  v, t = HF_CONFIG["vision_config"], HF_CONFIG["text_config"]
  d, f, n = v["hidden_size"], v["intermediate_size"], (v["image_size"] // v["patch_size"]) ** 2
  shapes = {
      "vision_tower.vision_model.embeddings.patch_embedding.weight": (d, 3, 14, 14),
      "vision_tower.vision_model.embeddings.patch_embedding.bias": (d,),
      "vision_tower.vision_model.embeddings.position_embedding.weight": (n, d),
      "vision_tower.vision_model.post_layernorm.weight": (d,),
      "vision_tower.vision_model.post_layernorm.bias": (d,),
      "multi_modal_projector.linear.weight": (t["hidden_size"], d),
      "multi_modal_projector.linear.bias": (t["hidden_size"],),
      "language_model.model.embed_tokens.weight": (t["vocab_size"], t["hidden_size"]),
      "language_model.model.norm.weight": (t["hidden_size"],),
  }
  for i in range(v["num_hidden_layers"]):
    p = f"vision_tower.vision_model.encoder.layers.{i}."
    for ln in ("layer_norm1", "layer_norm2"):
      shapes[p + ln + ".weight"] = shapes[p + ln + ".bias"] = (d,)
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
      shapes[p + f"self_attn.{proj}.weight"], shapes[p + f"self_attn.{proj}.bias"] = (d, d), (d,)
    shapes[p + "mlp.fc1.weight"], shapes[p + "mlp.fc1.bias"] = (f, d), (f,)
    shapes[p + "mlp.fc2.weight"], shapes[p + "mlp.fc2.bias"] = (d, f), (d,)
  w, h, nh, kh, ff = t["hidden_size"], t["head_dim"], t["num_attention_heads"], t["num_key_value_heads"], \
      t["intermediate_size"]
  for i in range(t["num_hidden_layers"]):
    p = f"language_model.model.layers.{i}."
    shapes[p + "input_layernorm.weight"] = shapes[p + "post_attention_layernorm.weight"] = (w,)
    shapes[p + "self_attn.q_proj.weight"] = (nh * h, w)
    shapes[p + "self_attn.k_proj.weight"] = shapes[p + "self_attn.v_proj.weight"] = (kh * h, w)
    shapes[p + "self_attn.o_proj.weight"] = (w, nh * h)
    shapes[p + "mlp.gate_proj.weight"] = shapes[p + "mlp.up_proj.weight"] = (ff, w)
    shapes[p + "mlp.down_proj.weight"] = (w, ff)
  return shapes


def _write_checkpoint(directory, tensors):
  from safetensors.numpy import save_file
  directory.mkdir(parents=True, exist_ok=True)
  save_file(tensors, str(directory / "model.safetensors"))
  (directory / "config.json").write_text(json.dumps(HF_CONFIG))
  return directory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  rng = np.random.default_rng(0)
  tensors = {k: rng.normal(size=s).astype(np.float32) for k, s in _hf_shapes().items()}
  # Pooling head and lm_head exist in real checkpoints and are not used: they must be ignored.
  tensors["vision_tower.vision_model.head.probe"] = np.zeros((1, 1, 32), np.float32)
  tensors["lm_head.weight"] = tensors["language_model.model.embed_tokens.weight"]
  directory = _write_checkpoint(tmp_path_factory.mktemp("paligemma"), tensors)
  cfg = hf_import.config_from_hf(directory)
  params = jax.eval_shape(lambda k: Pi0(cfg).init(k, batch_lib.zeros_batch(cfg, 1), k), jax.random.PRNGKey(0))
  params = jax.tree.map(lambda s: np.random.default_rng(1).normal(size=s.shape).astype(s.dtype), params)
  return directory, tensors, cfg, params


def test_import_round_trips_every_tensor_to_its_place(checkpoint):
  directory, tensors, cfg, params = checkpoint
  imported = hf_import.load_paligemma(directory, params, cfg)
  # Every written tensor comes back exactly through the inverse mapping (nothing lost or mixed up).
  exported = hf_import.params_to_hf(imported, cfg)
  expected = {k: v for k, v in tensors.items() if "head.probe" not in k and not k.startswith("lm_head")}
  assert sorted(exported) == sorted(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(exported[name], value, err_msg=name)
  # Spot checks of the layout conventions, independent of the inverse mapping.
  p = imported["params"]
  q = tensors["language_model.model.layers.1.self_attn.q_proj.weight"]            # (N*H, D)
  np.testing.assert_array_equal(p["decoder"]["layers"]["attn_0"]["q"][1, 2, :, 5], q[2 * 16 + 5])
  k = tensors["language_model.model.layers.0.self_attn.k_proj.weight"]            # (K*H, D)
  np.testing.assert_array_equal(p["decoder"]["layers"]["attn_0"]["k"][0, 1, :, 3], k[16 + 3])
  o = tensors["language_model.model.layers.0.self_attn.o_proj.weight"]            # (D, N*H)
  np.testing.assert_array_equal(p["decoder"]["layers"]["attn_0"]["o"][0, 3, 7, :], o[:, 3 * 16 + 7])
  gate = tensors["language_model.model.layers.1.mlp.gate_proj.weight"]            # (F, D)
  np.testing.assert_array_equal(p["decoder"]["layers"]["mlp_0"]["gate"][1], gate.T)
  patch = tensors["vision_tower.vision_model.embeddings.patch_embedding.weight"]  # (D, 3, p, p)
  np.testing.assert_array_equal(p["vision"]["embedding"]["kernel"][2, 5, 1, 7], patch[7, 1, 2, 5])
  vq = tensors["vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.weight"]  # (D_out, D_in)
  np.testing.assert_array_equal(p["vision"]["encoder"]["attn_query"]["kernel"][1, 4, 3, 2], vq[3 * 8 + 2, 4])
  vo = tensors["vision_tower.vision_model.encoder.layers.0.self_attn.out_proj.weight"]
  np.testing.assert_array_equal(p["vision"]["encoder"]["attn_out"]["kernel"][0, 1, 6, 9], vo[9, 1 * 8 + 6])
  np.testing.assert_array_equal(p["vision"]["pos_embedding"][0],
                                tensors["vision_tower.vision_model.embeddings.position_embedding.weight"])
  np.testing.assert_array_equal(p["decoder"]["layers"]["pre_mlp_norm_0"]["scale"][1],
                                tensors["language_model.model.layers.1.post_attention_layernorm.weight"])
  # The action expert and the action/state projections keep their own values.
  for path in (("decoder", "layers", "attn_1", "q"), ("state_proj", "kernel"), ("action_out_proj", "kernel")):
    a, b = imported["params"], params["params"]
    for key in path:
      a, b = a[key], b[key]
    np.testing.assert_array_equal(a, b)


def test_import_accepts_transformers5_and_in_memory_names(checkpoint, tmp_path):
  _, tensors, cfg, params = checkpoint
  renamed = {}
  for name, value in tensors.items():
    name = name.replace("vision_tower.vision_model.", "vision_tower.")           # save_pretrained (v5)
    name = name.replace("language_model.model.", "model.language_model.")        # in-memory names
    renamed[name] = value
  directory = _write_checkpoint(tmp_path / "renamed", renamed)
  a = hf_import.load_paligemma(directory, params, cfg)
  b = hf_import.load_paligemma(checkpoint[0], params, cfg)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_import_names_missing_and_misshaped_tensors(checkpoint, tmp_path):
  _, tensors, cfg, params = checkpoint
  missing = {k: v for k, v in tensors.items() if "layers.1.mlp.up_proj" not in k}
  with pytest.raises(KeyError, match=r"language_model\.layers\.1\.mlp\.up_proj\.weight"):
    hf_import.load_paligemma(_write_checkpoint(tmp_path / "missing", missing), params, cfg)
  bad = dict(tensors)
  bad["language_model.model.layers.0.self_attn.q_proj.weight"] = np.zeros((60, 48), np.float32)
  with pytest.raises(ValueError, match=r"q_proj\.weight has shape \(60, 48\)"):
    hf_import.load_paligemma(_write_checkpoint(tmp_path / "bad", bad), params, cfg)
  extra = dict(tensors, **{"language_model.model.layers.0.extra.weight": np.zeros((3,), np.float32)})
  with pytest.raises(KeyError, match="no place in the model"):
    hf_import.load_paligemma(_write_checkpoint(tmp_path / "extra", extra), params, cfg)
  with pytest.raises(FileNotFoundError):
    hf_import.read_safetensors(tmp_path)


def test_prefix_logits_match_transformers_paligemma(tmp_path):
  """Our image+text prefix path against PyTorch PaliGemma on the same (imported) weights."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  hf_cfg = transformers.PaliGemmaConfig(
      vision_config=HF_CONFIG["vision_config"], text_config=HF_CONFIG["text_config"],
      image_token_index=99, vocab_size=100, projection_dim=48, hidden_size=48)
  hf_model = transformers.PaliGemmaForConditionalGeneration(hf_cfg).eval()
  with torch.no_grad():   # norms start at zero; randomize so (1 + scale) and LayerNorm affine matter
    for name, param in hf_model.named_parameters():
      if "norm" in name:
        param.add_(0.3 * torch.randn_like(param))
  hf_model.save_pretrained(tmp_path / "pg")
  cfg = hf_import.config_from_hf(tmp_path / "pg", max_token_len=5, num_cameras=1)
  model = Pi0(cfg)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (2, 1, 28, 28, 3)).astype(np.float32)
  tokens = rng.integers(1, 99, (2, 5)).astype(np.int32)
  obs = dict(batch_lib.zeros_batch(cfg, 2), images=images, tokens=tokens, token_mask=np.ones((2, 5), bool),
             image_mask=np.ones((2, 1), bool))
  key = jax.random.PRNGKey(0)
  params = jax.device_get(jax.jit(lambda o: model.init(key, o, method=Pi0.prefix_logits))(obs))
  params = hf_import.load_paligemma(tmp_path / "pg", params, cfg)
  ours = np.asarray(jax.jit(lambda p, o: model.apply(p, o, method=Pi0.prefix_logits))(params, obs))
  ids = np.concatenate([np.full((2, cfg.vision.num_tokens), 99), tokens], axis=1)
  with torch.no_grad():
    ref = hf_model(input_ids=torch.tensor(ids), pixel_values=torch.tensor(images[:, 0].transpose(0, 3, 1, 2)),
                   attention_mask=torch.ones(ids.shape, dtype=torch.long),
                   token_type_ids=torch.zeros(ids.shape, dtype=torch.long),      # whole prefix bidirectional
                   position_ids=torch.arange(ids.shape[1])[None].repeat(2, 1)).logits.numpy()
  assert ours.shape == ref.shape == (2, 4 + 5, 100)
  np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=1e-4)
  assert np.abs(ref).max() > 0.1


def test_tokenizer_loads_from_local_files(tmp_path):
  pytest.importorskip("transformers")
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  from vlajax.vla.tokenizer import load_tokenizer
  vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "pick": 4, "up": 5, "the": 6, "red": 7,
           "block": 8, "\n": 9}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(" ", "removed"),
                                               pre_tokenizers.Split("\n", "isolated")])
  PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                          unk_token="<unk>").save_pretrained(tmp_path / "tok")
  tokenizer = load_tokenizer(tmp_path / "tok", max_len=8)
  tokens, mask = tokenizer(["pick up the red block", "pick_up blue"])
  np.testing.assert_array_equal(tokens, [[2, 4, 5, 6, 7, 8, 9, 0], [2, 4, 5, 3, 9, 0, 0, 0]])
  np.testing.assert_array_equal(mask.sum(1), [7, 5])
  with pytest.raises(FileNotFoundError, match="local files only"):
    load_tokenizer(tmp_path / "absent", max_len=8)
