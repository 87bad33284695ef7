"""The action-head factory, the regression baseline and the flow head through the factory.

ACT and diffusion have their own files (tests/test_policies_act.py, test_policies_diffusion*.py) so
that each file stays short on CPU.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import policies_testlib as lib
from vlajax.policies import heads
from vlajax.policies.act import ACTPolicy
from vlajax.policies.diffusion import DiffusionPolicy
from vlajax.policies.flow_matching import FlowMatchingPolicy
from vlajax.policies.regression import RegressionPolicy, masked_l1


def test_make_head_kinds_and_unknown_kind():
  expected = {"regression": RegressionPolicy, "act": ACTPolicy, "diffusion": DiffusionPolicy,
              "flow": FlowMatchingPolicy}
  assert set(heads.KINDS) == set(expected)
  for kind, cls in expected.items():
    head = heads.make_head(kind, 8, 3, image_keys=["image_primary"])
    assert isinstance(head, cls)
  assert heads.make_head("act", 8, 3).action_horizon == 8
  assert heads.make_head("diffusion", 8, 3, state_key="state").state_key == "state"
  assert heads.make_head("flow", 8, 3).encoder.state_key == "proprio"
  with pytest.raises(ValueError, match=r"'mlp'.*regression, act, diffusion, flow"):
    heads.make_head("mlp", 8, 3)
  assert isinstance(heads.make_head("flow", 8, 3, augment=False), FlowMatchingPolicy)
  with pytest.raises(ValueError, match="augment"):
    heads.make_head("flow", 8, 3, augment=True)
  with pytest.raises(TypeError, match="widht"):
    heads.make_head("regression", 8, 3, widht=4)


def test_diffusion_rejects_incompatible_action_horizon():
  with pytest.raises(ValueError, match="action_horizon"):
    heads.make_head("diffusion", 6, 2, channels=(16, 32, 64))   # two halvings need H % 4 == 0
  with pytest.raises(ValueError, match=r"action_horizon \(5\)"):
    DiffusionPolicy(action_dim=2, action_horizon=5)
  heads.make_head("diffusion", 4, 2, channels=(16, 32, 64))     # 4 -> 2 -> 1 is fine
  heads.make_head("diffusion", 7, 2, channels=(16,))            # no down-sampling at all


def test_masked_l1():
  pred = jnp.zeros((2, 3, 2))
  target = jnp.ones((2, 3, 2)).at[:, 2].set(-100.0).at[1, :, 1].set(50.0)
  mask = jnp.ones((2, 3, 2)).at[:, 2].set(0.0).at[1, :, 1].set(0.0)
  loss, per_example = masked_l1(pred, target, mask)
  np.testing.assert_allclose(per_example, [1.0, 1.0])
  assert float(loss) == pytest.approx(1.0)
  loss, per_example = masked_l1(pred, target.at[0, 0, 0].set(3.0))
  np.testing.assert_allclose(per_example[0], (3 + 3 + 200) / 6, rtol=1e-6)


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_regression_overfits_tiny_dataset(loss):
  obs, actions = lib.dataset()
  head = heads.make_head("regression", lib.HORIZON, lib.ACTION_DIM, width=64, loss=loss)
  params, losses = lib.fit(head, obs, actions, steps=300, lr=3e-3)
  first, last = lib.loss_drop(losses)
  assert last < 0.05 * first, (first, last)
  sampled = lib.jit_sample(head, params, obs)
  assert sampled.shape == (lib.BATCH, lib.HORIZON, lib.ACTION_DIM) and sampled.dtype == jnp.float32
  error = float(jnp.abs(sampled - actions).mean())
  assert error < 0.05, error
  if loss == "l1":
    lib.check_mask_invariance(head, params, obs, actions)


def test_regression_rejects_unknown_loss():
  head = heads.make_head("regression", 2, 1, width=8, loss="huber")
  obs = {"proprio": jnp.zeros((2, 3))}
  with pytest.raises(ValueError, match="huber"):
    head.init(jax.random.PRNGKey(0), obs, jnp.zeros((2, 2, 1)), jax.random.PRNGKey(0))


def test_augmentation_only_in_the_loss():
  obs = {"proprio": jnp.zeros((2, 3)),
         "cam": jax.random.randint(jax.random.PRNGKey(0), (2, 16, 16, 3), 0, 256).astype(jnp.uint8)}
  actions = jnp.zeros((2, 2, 1))
  plain = heads.make_head("regression", 2, 1, image_keys=("cam",), width=8, image_channels=(8,))
  augmented = plain.clone(augment=True)
  key = jax.random.PRNGKey(1)
  params = jax.jit(plain.init)(key, obs, actions, key)
  loss = jax.jit(lambda head_params, k: plain.apply(head_params, obs, actions, k)[0])
  loss_aug = jax.jit(lambda head_params, k: augmented.apply(head_params, obs, actions, k)[0])
  assert float(loss(params, key)) == pytest.approx(float(loss(params, jax.random.PRNGKey(2))))
  assert abs(float(loss_aug(params, key)) - float(loss(params, key))) > 1e-6
  assert abs(float(loss_aug(params, key)) - float(loss_aug(params, jax.random.PRNGKey(2)))) > 1e-6
  np.testing.assert_array_equal(lib.jit_sample(augmented, params, obs), lib.jit_sample(plain, params, obs))


def test_flow_head_through_factory_overfits():
  obs, actions = lib.dataset()
  head = heads.make_head("flow", lib.HORIZON, lib.ACTION_DIM, width=128, depth=2)
  params, losses = lib.fit(head, obs, actions, steps=300, lr=1e-3)
  first, last = lib.loss_drop(losses)
  assert last < 0.2 * first, (first, last)
  sampled = lib.jit_sample(head, params, obs)
  assert sampled.shape == (lib.BATCH, lib.HORIZON, lib.ACTION_DIM) and sampled.dtype == jnp.float32
  error = float(jnp.abs(sampled - actions).mean())
  assert error < 0.2, error
