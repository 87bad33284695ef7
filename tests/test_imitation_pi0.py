"""Pi0 implements the action-head protocol, so the imitation trainer trains it like any head:
from the same seed and batch it gives the same loss and the same update as the VLA's own step
(`vla/train.py`)."""
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

OPTIM = dict(peak_lr=1e-3, end_lr=1e-5, warmup_steps=0, decay_steps=100, b1=0.9, b2=0.95,
             eps=1e-8, weight_decay=1e-4, grad_clip=1.0, ema_decay=None, grad_accum=1)


def _as_head_batch(batch: dict) -> dict:
  obs = {k: batch[k] for k in batch_lib.OBSERVATION_KEYS}
  return {"obs": obs, "actions": batch["actions"],
          "mask": np.broadcast_to(np.asarray(batch_lib.loss_mask(batch)), batch["actions"].shape)}


def test_pi0_trains_through_the_shared_loop_like_its_own_step():
  cfg = train_vla.model_config(configs.get_config("smoke").model)
  model = Pi0(cfg)
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1}, devices=jax.devices()[:1])
  batch = SyntheticVLADataset(cfg, 8, seed=0, pad_action_dims=2).batch(0, 8)
  vla_state, vla_trainer = vla_train.create_train_state(model, vla_train.OptimConfig(**OPTIM), 0,
                                                        mesh)
  head_batch = _as_head_batch(batch)
  trainer = imitation_train.build_trainer(model, imitation_train.OptimConfig(**OPTIM), head_batch,
                                          mesh)
  state = trainer.init(jax.random.PRNGKey(0))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(vla_state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  new_vla, vla_metrics = vla_trainer.step(vla_state, batch)
  new, metrics = trainer.step(state, head_batch)
  assert float(metrics["loss"]) == pytest.approx(float(vla_metrics["loss"]), rel=1e-6)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(new_vla.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
  chunk = trainer.sample(new.params, head_batch["obs"], jax.random.PRNGKey(1))
  assert chunk.shape == batch["actions"].shape
