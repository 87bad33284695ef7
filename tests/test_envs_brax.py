"""brax's own PPO trains on our quadruped through `to_brax`, with our DR as brax's randomization_fn."""
import functools

import jax
import numpy as np

from vlajax import envs
from vlajax.envs import brax_adapter


def test_brax_ppo_runs_on_quadruped_joystick():
  brax_adapter.install_device_put_replicated()
  from brax.training.agents.ppo import networks as ppo_networks  # pylint: disable=import-outside-toplevel
  from brax.training.agents.ppo import train as brax_ppo  # pylint: disable=import-outside-toplevel

  # Model-level DR comes from brax's wrapper here, so our in-env DR is off.
  env = envs.make("quadruped_joystick", **{"randomization.enabled": False})
  brax_env = envs.to_brax(env)
  assert brax_env.observation_size == env.observation_size
  progress = []
  make_networks = functools.partial(ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=(16,),
                                    value_hidden_layer_sizes=(16,), policy_obs_key="state",
                                    value_obs_key="privileged_state")
  _, params, _ = brax_ppo.train(
      environment=brax_env, num_timesteps=2 * 8 * 4, episode_length=10, num_envs=8, batch_size=8,
      num_minibatches=1, unroll_length=4, num_updates_per_batch=1, num_evals=1, num_eval_envs=4,
      max_devices_per_host=1, network_factory=make_networks, seed=0,
      randomization_fn=brax_adapter.randomization_fn(env),
      progress_fn=lambda step, metrics: progress.append((step, metrics)))
  # One evaluation, after training (brax's initial one, with num_evals > 1, would compile the
  # evaluator a second time: under current JAX its donated state changes sharding between calls).
  assert len(progress) == 1 and progress[-1][0] >= 2 * 8 * 4
  assert np.isfinite(float(progress[-1][1]["eval/episode_reward"]))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
