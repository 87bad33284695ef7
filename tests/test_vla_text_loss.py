"""Co-training text loss: masked next-token cross-entropy on prefix text targets."""
import jax
import numpy as np
import pytest

from experiments import train_vla
from vlajax.core import mesh as mesh_lib
from vlajax.imitation import train as imitation_train
from vlajax.vla import batch as batch_lib
from vlajax.vla import config as vla_config
from vlajax.vla import text_loss
from vlajax.vla.pi0 import Pi0
from vlajax.vla.synthetic import SyntheticVLADataset
from vlajax.vla.tokenizer import ByteTokenizer

CFG = vla_config.tiny(text_loss_weight=1.0)


def test_cross_entropy_counts_only_target_labels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 11)).astype(np.float32)
  labels = rng.integers(0, 11, (2, 5))
  weights = np.array([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.float32)
  loss = float(text_loss.masked_cross_entropy(logits, labels, weights))
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.mean([log_probs[0, 1, labels[0, 1]], log_probs[0, 2, labels[0, 2]], log_probs[1, 0, labels[1, 0]]])
  assert loss == pytest.approx(expected, rel=1e-5)
  other = np.where(weights > 0, labels, (labels + 3) % 11)          # change every non-target label
  assert float(text_loss.masked_cross_entropy(logits, other, weights)) == pytest.approx(loss, rel=1e-6)
  other[0, 1] = (labels[0, 1] + 1) % 11                              # ...but a target label counts
  assert float(text_loss.masked_cross_entropy(logits, other, weights)) != pytest.approx(loss, rel=1e-4)
  assert float(text_loss.masked_cross_entropy(logits, labels, np.zeros_like(weights))) == 0.0
  # Labels are the next tokens; weights need both a target and a real token.
  labels, weights = text_loss.next_token_targets(np.array([[5, 6, 7, 8]]), np.array([[0, 0, 1, 1]], bool),
                                                 np.array([[1, 1, 1, 0]], bool))
  np.testing.assert_array_equal(labels, [[6, 7, 8]])
  np.testing.assert_array_equal(weights, [[0, 1, 0]])


@pytest.fixture(scope="module")
def text_only_run():
  """60 train steps of the tiny model on 4 examples whose actions are all masked out (like
  co-training vision-language rows): the only signal is the text loss. Returns (model, initial
  params, per-step text losses, per-step action losses)."""
  model = Pi0(CFG)
  optim = imitation_train.OptimConfig(peak_lr=1e-2, end_lr=1e-3, warmup_steps=5, decay_steps=60,
                                      weight_decay=0.0, ema_decay=None)
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1}, devices=jax.devices()[:1])
  trainer = train_vla.make_trainer(model, optim, mesh)
  state = trainer.init(jax.random.PRNGKey(0))
  params = jax.device_get(state.params)
  data = SyntheticVLADataset(CFG, 4, seed=0, text_targets=True)
  data.examples["action_mask"][:] = False
  text, action = [], []
  for i in range(60):
    state, metrics = trainer.step(state, batch_lib.to_head_batch(data.batch(i, 4)))
    text.append(float(metrics["text_loss"]))
    action.append(float(metrics["action_loss"]))
  return model, params, text, action


def _batch(n=8):
  batch = SyntheticVLADataset(CFG, n, seed=2, text_targets=True).all()
  assert batch["text_target_mask"].sum(1).max() >= 2 and not batch["text_target_mask"].all()
  return batch


def test_text_loss_is_finite_masked_and_causal(text_only_run):
  model, params, _, _ = text_only_run
  losses_fn = jax.jit(lambda p, b: model.apply(p, b, jax.random.PRNGKey(1), method=Pi0.compute_losses))
  batch = _batch()
  losses = losses_fn(params, batch)
  assert np.isfinite(float(losses["text_loss"])) and float(losses["text_loss"]) > 0
  assert float(losses["loss"]) == pytest.approx(float(losses["action_loss"] + losses["text_loss"]), rel=1e-5)
  # Padding ids do not matter; moving the target mask does.
  padded = dict(batch, tokens=np.where(batch["token_mask"], batch["tokens"], 9))
  assert float(losses_fn(params, padded)["text_loss"]) == pytest.approx(float(losses["text_loss"]), rel=1e-5)
  fewer = dict(batch, text_target_mask=batch["text_target_mask"] & (np.arange(CFG.max_token_len) >= 3))
  assert float(losses_fn(params, fewer)["text_loss"]) != pytest.approx(float(losses["text_loss"]), rel=1e-4)
  # Targets are causal: changing target token j leaves the logits of every earlier position as they were
  # (so its own prediction, made at j - 1, has not seen it).
  logits_fn = jax.jit(lambda p, o: model.apply(p, o, method=Pi0.prefix_logits))
  obs = {k: batch[k] for k in batch_lib.OBSERVATION_KEYS + ("text_target_mask",)}
  row = int(np.argmax(batch["text_target_mask"].sum(1)))
  j = int(np.nonzero(batch["text_target_mask"][row])[0][0]) + 1           # the second target token
  assert batch["text_target_mask"][row, j]
  changed = dict(obs, tokens=obs["tokens"].copy())
  changed["tokens"][row, j] = (obs["tokens"][row, j] + 7) % CFG.vocab_size
  text_start = CFG.num_cameras * CFG.vision.num_tokens
  base, moved = np.asarray(logits_fn(params, obs)), np.asarray(logits_fn(params, changed))
  np.testing.assert_allclose(moved[row, :text_start + j], base[row, :text_start + j], atol=1e-5)
  assert np.abs(moved[row, text_start + j:] - base[row, text_start + j:]).max() > 1e-4
  # Without text targets the same change reaches the earlier positions (one bidirectional block).
  bidir = dict(obs, text_target_mask=np.zeros_like(obs["text_target_mask"]))
  assert np.abs(np.asarray(logits_fn(params, dict(bidir, tokens=changed["tokens"])))[row, :text_start + j]
                - np.asarray(logits_fn(params, bidir))[row, :text_start + j]).max() > 1e-4
  with pytest.raises(KeyError, match="text_target_mask"):
    losses_fn(params, {k: v for k, v in batch.items() if k != "text_target_mask"})


def test_text_loss_alone_falls_on_tiny_data(text_only_run):
  _, _, text, action = text_only_run
  assert np.all(np.isfinite(text)) and max(action) == 0.0
  assert np.mean(text[-5:]) < np.mean(text[:3]) / 3, (text[:3], text[-5:])


def test_vision_language_rows_bring_their_answers_as_targets():
  cfg = CFG.replace(max_token_len=12)
  b, t, h, size = 2, 1, cfg.action_horizon, cfg.vision.image_size
  data_batch = {
      "observation": {
          "image_primary": np.zeros((b, t, size, size, 3), np.uint8),
          "image_wrist": np.zeros((b, t, size, size, 3), np.uint8),
          "image_mask": {"primary": np.ones((b, t), bool), "wrist": np.zeros((b, t), bool)},
          "proprio": np.zeros((b, t, 3), np.float32), "proprio_mask": np.ones((b, t, 3), bool)},
      "action": np.zeros((b, h, 7), np.float32), "action_pad_mask": np.ones((b, h, 7), bool),
      "instruction": np.array([b"go", b"what"], dtype=object), "is_robot": np.array([True, False]),
      "answer": np.array([b"", b"ab"], dtype=object),
  }
  tokenizer = ByteTokenizer(cfg.vocab_size, cfg.max_token_len)
  out = batch_lib.from_standardized(data_batch, cfg, tokenizer)
  assert batch_lib.validate_batch(out, cfg) == 2
  assert not out["text_target_mask"][0].any()                          # robot row: no text target
  prompt = tokenizer.encode("what")
  target = tokenizer.encode_target("ab")
  assert len(prompt) + len(target) <= cfg.max_token_len
  np.testing.assert_array_equal(out["tokens"][1, :len(prompt) + len(target)], prompt + target)
  np.testing.assert_array_equal(np.nonzero(out["text_target_mask"][1])[0],
                                np.arange(len(prompt), len(prompt) + len(target)))
  assert not out["action_mask"][1].any()
  with pytest.raises(TypeError, match="with_targets"):
    batch_lib.from_standardized(data_batch, cfg, lambda texts: tokenizer(texts))
