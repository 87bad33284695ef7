"""pi0 model: KV-cached sampling, padding invariance, preset sizes, batch validation."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlajax.vla import batch as batch_lib
from vlajax.vla import config as vla_config
from vlajax.vla import train as train_lib
from vlajax.vla.pi0 import Pi0
from vlajax.vla.synthetic import SyntheticVLADataset

CFG = vla_config.tiny()


@pytest.fixture(scope="module")
def model_and_params():
  model = Pi0(CFG)
  key = jax.random.PRNGKey(0)
  params = jax.jit(model.init)(key, batch_lib.zeros_batch(CFG, 1), key)
  return model, params


def _observation(batch_size=3):
  """Synthetic observations with text padding (random lengths) and the wrist camera of row 0 absent."""
  obs = SyntheticVLADataset(CFG, batch_size, seed=3).all()
  obs["image_mask"][0, 1] = False
  return {k: obs[k] for k in batch_lib.OBSERVATION_KEYS}


def test_kv_cached_sampling_equals_recomputing_the_prefix(model_and_params):
  model, params = model_and_params
  obs = _observation()
  assert not obs["token_mask"].all()  # some text padding is exercised
  rng = jax.random.PRNGKey(7)
  cached = train_lib.make_sampler(model, 10, True)(params, obs, rng)
  full = train_lib.make_sampler(model, 10, False)(params, obs, rng)
  assert cached.shape == (3, CFG.action_horizon, CFG.action_dim)
  assert np.all(np.isfinite(cached))
  np.testing.assert_allclose(cached, full, atol=2e-5, rtol=1e-5)
  # The samples actually depend on the observation (the check above is not vacuous).
  other = dict(obs, state=obs["state"] + 1.0)
  moved = train_lib.make_sampler(model, 10, True)(params, other, rng)
  assert np.abs(moved - cached).max() > 1e-3


def test_padding_and_absent_cameras_do_not_change_the_output(model_and_params):
  model, params = model_and_params
  obs = _observation()
  rng = jax.random.PRNGKey(1)
  sample = train_lib.make_sampler(model, 10, False)
  base = sample(params, obs, rng)
  changed = {k: np.array(v) for k, v in obs.items()}
  changed["tokens"] = np.where(obs["token_mask"], obs["tokens"], 17)   # different padding ids
  changed["images"][0, 1] = 0.9                                         # absent camera's pixels
  np.testing.assert_allclose(sample(params, changed, rng), base, atol=1e-5)
  # ...whereas a real text token does change it.
  changed["tokens"][:, 0] = (obs["tokens"][:, 0] + 5) % CFG.vocab_size
  assert np.abs(sample(params, changed, rng) - base).max() > 1e-4


def _param_count(cfg):
  model = Pi0(cfg)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch_lib.zeros_batch(cfg, 1))
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  shapes = jax.eval_shape(model.init, key, batch, key)
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)), shapes


def test_pi0_preset_has_3_3b_parameters_without_allocating():
  total, shapes = _param_count(vla_config.pi0())
  assert abs(total - 3.3e9) / 3.3e9 < 0.02, total
  layers = shapes["params"]["decoder"]["layers"]
  expert = sum(math.prod(x.shape) for k, v in layers.items() if k.endswith("_1") for x in jax.tree.leaves(v))
  assert 2.9e8 < expert < 3.3e8, expert     # gemma_300m action expert
  assert layers["attn_0"]["q"].shape == (18, 8, 2048, 256)
  assert layers["attn_0"]["k"].shape == (18, 1, 2048, 256)
  assert shapes["params"]["vision"]["pos_embedding"].shape == (1, 256, 1152)


def test_small_preset_is_smolvla_scale():
  total, _ = _param_count(vla_config.small())
  assert 2e8 < total < 6e8, total


def test_batch_validation_names_the_field():
  batch = batch_lib.zeros_batch(CFG, 2)
  assert batch_lib.validate_batch(batch, CFG) == 2
  with pytest.raises(KeyError, match="tokens"):
    batch_lib.validate_batch({k: v for k, v in batch.items() if k != "tokens"}, CFG)
  bad = dict(batch, images=np.zeros((2, CFG.num_cameras, 32, 32, 3), np.float32))
  with pytest.raises(ValueError, match="images"):
    batch_lib.validate_batch(bad, CFG)


def test_config_rejects_mismatched_experts():
  with pytest.raises(ValueError, match="depth"):
    vla_config.tiny(expert=vla_config.GemmaConfig(width=16, depth=3, mlp_dim=32, num_heads=2,
                                                  num_kv_heads=1, head_dim=16))
  with pytest.raises(KeyError, match="unknown VLA preset"):
    vla_config.get_preset("huge")


@pytest.mark.slow
def test_bfloat16_compute_stays_close_to_float32(model_and_params):
  """bf16 activations with fp32 weights: KV cache vs recompute and bf16 vs fp32 stay close."""
  model, params = model_and_params
  bf16 = Pi0(CFG.replace(dtype="bfloat16"))
  obs = _observation()
  rng = jax.random.PRNGKey(7)
  ref = train_lib.make_sampler(model, 10, True)(params, obs, rng)
  cached = train_lib.make_sampler(bf16, 10, True)(params, obs, rng)
  full = train_lib.make_sampler(bf16, 10, False)(params, obs, rng)
  assert cached.dtype == jnp.float32
  np.testing.assert_allclose(cached, full, atol=3e-2)
  np.testing.assert_allclose(cached, ref, atol=1e-1)
  loss, _ = jax.jit(lambda p, b, k: bf16.apply(p, b, k))(params, batch_lib.zeros_batch(CFG, 2), rng)
  assert np.isfinite(float(loss))


def test_loss_mask_combines_padded_steps_and_dims():
  batch = {"action_mask": np.array([[True, True, False]]), "action_dim_mask": np.array([[True, False]])}
  np.testing.assert_array_equal(batch_lib.loss_mask(batch)[0], [[1, 0], [1, 0], [0, 0]])
  per_entry = {"action_mask": np.array([[[True, False], [False, True], [True, True]]])}
  np.testing.assert_array_equal(batch_lib.loss_mask(per_entry)[0], [[1, 0], [0, 1], [1, 1]])
  assert batch_lib.loss_mask({}) is None


def test_standardized_data_batch_converts_to_a_model_batch():
  """The ``vlajax.data`` batch format -> model batch: last history step, padding, robot-only loss."""
  b, t, h = 2, 2, CFG.action_horizon
  size = CFG.vision.image_size
  data_batch = {
      "observation": {
          "image_primary": np.full((b, t, size, size, 3), 255, np.uint8),
          "image_wrist": np.zeros((b, t, size, size, 3), np.uint8),
          "image_mask": {"primary": np.ones((b, t), bool), "wrist": np.array([[True, False], [True, True]])},
          "proprio": np.arange(b * t * 5, dtype=np.float32).reshape(b, t, 5),
          "proprio_mask": np.ones((b, t, 5), bool), "timestep_pad_mask": np.ones((b, t), bool)},
      "action": np.ones((b, h, 7), np.float32), "action_pad_mask": np.ones((b, h, 7), bool),
      "instruction": np.array([b"pick", b"place"], dtype=object), "is_robot": np.array([True, False]),
  }
  tokenize = lambda texts: (np.ones((len(texts), CFG.max_token_len), np.int32),
                            np.ones((len(texts), CFG.max_token_len), bool))
  out = batch_lib.from_standardized(data_batch, CFG, tokenize)
  assert batch_lib.validate_batch(out, CFG) == 2
  np.testing.assert_allclose(out["images"][:, 0], 1.0)
  np.testing.assert_array_equal(out["image_mask"], [[True, False], [True, True]])   # last step
  np.testing.assert_array_equal(out["state"][0], [5, 6, 7, 8, 9, 0, 0, 0])           # padded to 8
  assert out["actions"].shape == (2, h, CFG.action_dim) and out["action_mask"][0, :, 7].sum() == 0
  assert out["action_mask"][0, :, :7].all() and not out["action_mask"][1].any()      # VL row: no loss
  data_batch["observation"]["image_primary"] = np.zeros((b, t, 32, 32, 3), np.uint8)
  with pytest.raises(ValueError, match="image_primary"):
    batch_lib.from_standardized(data_batch, CFG, tokenize)
