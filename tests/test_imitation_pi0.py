"""Pi0 trained by the one imitation trainer (`vlajax.imitation.train` with the VLA's hooks, as
`experiments.train_vla` builds it): the same losses as the VLA's own step gave before the move,
FSDP-sharded training equal to single-device training, the EMA warm-up, frozen leaves kept."""
import dataclasses

import jax
import numpy as np
import pytest

from experiments import train_vla
from experiments.configs import train_vla as configs
from vlajax.core import mesh as mesh_lib
from vlajax.imitation import train as imitation_train
from vlajax.vla import batch as batch_lib
from vlajax.vla import train as vla_train
from vlajax.vla.pi0 import Pi0
from vlajax.vla.synthetic import SyntheticVLADataset

OPTIM = imitation_train.OptimConfig(
    peak_lr=1e-3, end_lr=1e-5, warmup_steps=0, decay_steps=100, b1=0.9, b2=0.95, eps=1e-8,
    weight_decay=1e-4, grad_clip=1.0, ema_decay=None, grad_accum=1)
# (loss, action_loss, text_loss) of steps 1-3 from seed 0 on `_text_data()`'s batches 0-2, by the
# VLA's own train step (`vla/train.py` before it moved onto the imitation trainer; CPU float32).
BEFORE_THE_MOVE = [(7.0713067054748535, 2.1511611938476562, 4.920145511627197),
                   (7.780770301818848, 2.729588747024536, 5.051181793212891),
                   (6.710853576660156, 2.1369006633758545, 4.573953151702881)]


def _smoke_cfg(**fields):
  return train_vla.model_config(configs.get_config("smoke").model).replace(**fields)


def _mesh(data, fsdp):
  return mesh_lib.make_mesh({"data": data, "fsdp": fsdp}, devices=jax.devices()[:data * fsdp])


def _text_data(cfg):
  return SyntheticVLADataset(cfg, 16, seed=0, pad_action_dims=2, text_targets=True)


def test_losses_and_their_parts_are_those_of_the_vla_step_before_the_move():
  cfg = _smoke_cfg(text_loss_weight=1.0)
  model = Pi0(cfg)
  trainer = train_vla.make_trainer(model, OPTIM, _mesh(1, 1))
  state = trainer.init(jax.random.PRNGKey(0))
  data = _text_data(cfg)
  # Step 1's loss is the model's own loss of the initial parameters with the step's key.
  _, step_rng = jax.random.split(state.rng)
  direct = jax.jit(lambda p, b, r: model.apply(p, b, r, method=Pi0.compute_losses))(
      state.params, data.batch(0, 8), step_rng)
  for i, expected in enumerate(BEFORE_THE_MOVE):
    state, metrics = trainer.step(state, batch_lib.to_head_batch(data.batch(i, 8)))
    got = tuple(float(metrics[k]) for k in ("loss", "action_loss", "text_loss"))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    if i == 0:
      assert got[0] == pytest.approx(float(direct["loss"]), rel=1e-6)
  chunk = trainer.sample(state.params, batch_lib.to_head_batch(data.batch(0, 8))["obs"],
                         jax.random.PRNGKey(1))
  assert chunk.shape == (8, cfg.action_horizon, cfg.action_dim)


def _train_on_one_batch(mesh, steps):
  """`steps` updates on one fixed batch with EMA (0.99, warm-up) and the ViT frozen; returns
  (losses, states after every step (host), initial state (host), final state (on the mesh))."""
  model = Pi0(_smoke_cfg())
  optim = dataclasses.replace(OPTIM, peak_lr=3e-3, ema_decay=0.99)
  trainer = train_vla.make_trainer(model, optim, mesh, "vision", min_shard_size=256)
  state = trainer.init(jax.random.PRNGKey(0))
  first = jax.device_get(state)
  batch = batch_lib.to_head_batch(SyntheticVLADataset(model.config, 8, seed=3).batch(0, 8))
  batch = mesh_lib.shard_batch(batch, mesh)
  losses, states = [], []
  for _ in range(steps):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics["loss"]))
    states.append(jax.device_get(state))
  return losses, states, first, state


def test_fsdp_training_equals_one_device_and_the_ema_warms_up_and_keeps_frozen_leaves():
  steps = 12
  losses, states, first, _ = _train_on_one_batch(_mesh(1, 1), steps)
  sharded_losses, sharded_states, _, sharded = _train_on_one_batch(_mesh(2, 2), steps)
  assert np.mean(losses[-3:]) < 0.65 * np.mean(losses[:2]), losses   # flow-matching noise: noisy
  np.testing.assert_allclose(sharded_losses, losses, rtol=2e-4)
  assert any("fsdp" in str(x.sharding.spec) for x in jax.tree.leaves(sharded.params))
  for x, y in zip(jax.tree.leaves(states[-1]), jax.tree.leaves(sharded_states[-1])):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=2e-4, rtol=2e-3)
  # EMA: e_t = d_t e_{t-1} + (1 - d_t) p_t with d_t = min(0.99, (1 + t) / (10 + t)), t = 0, 1, ...
  mask = imitation_train.frozen_mask(first.params, vla_train.frozen_predicate("vision"))
  ema = first.params
  for t, s in enumerate(states):
    d = min(0.99, (1.0 + t) / (10.0 + t))
    ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, s.params)
  final = states[-1]
  for f, e, got, p, p0 in zip(*(jax.tree.leaves(t) for t in (mask, ema, final.ema_params, final.params,
                                                               first.params))):
    if f:   # frozen: never moves, its EMA is the leaf itself
      np.testing.assert_array_equal(p, p0)
      np.testing.assert_array_equal(got, p)
    else:
      np.testing.assert_allclose(got, e, atol=1e-6, rtol=1e-5)
  assert any(jax.tree.leaves(mask)) and not all(jax.tree.leaves(mask))
