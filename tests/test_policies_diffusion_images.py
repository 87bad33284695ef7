"""Diffusion Policy conditioned on a 16x16 camera with a 2-frame history (ResNet + spatial softmax)."""
import jax.numpy as jnp

import policies_testlib as lib
from vlajax.policies import heads


def test_diffusion_overfits_image_history_dataset():
  obs, actions = lib.dataset(images=True)
  head = heads.make_head("diffusion", lib.HORIZON, lib.ACTION_DIM, image_keys=("image_primary",),
                         obs_width=64, channels=(32, 64), image_encoder="resnet",
                         image_channels=(8, 16))
  params, losses = lib.fit(head, obs, actions, steps=300, lr=3e-3)
  assert "keypoints" in params["params"]["encoder"]["image_image_primary"]
  first, last = lib.loss_drop(losses)
  assert last < 0.15 * first, (first, last)
  sampled = lib.jit_sample(head, params, obs)
  assert sampled.shape == (lib.BATCH, lib.HORIZON, lib.ACTION_DIM) and sampled.dtype == jnp.float32
  error = float(jnp.abs(sampled - actions).mean())
  assert error < 0.2, error
