"""The `quadruped` presets of SAC and TD-MPC run end to end on the Go1 joystick env (slow).

The presets are accelerator-sized; here only the sizes shrink (envs, batch, replay, widths, planner),
so everything else they set is exercised: the privileged critic observation of SAC, TD-MPC's
termination head (`episodic`), the quadruped's episode length and DR, training through the loop with
checkpoints and evaluation, and loading the policy back.
"""
import jax
import numpy as np
import pytest

from experiments.configs import sac_control, tdmpc_control
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.rl import loop, sac, tdmpc

ITERATIONS = 3


def _shrunk(kind):
  if kind == "sac":
    config = sac_control.get_config("quadruped")
    config.sac.update(dict(num_envs=4, batch_size=16, grad_updates_per_step=2, replay_capacity=512,
                           min_replay=16, steps_per_iteration=8, num_iterations=ITERATIONS,
                           actor_hidden=(16,), critic_hidden=(16,)))
    return config, config.sac, sac
  config = tdmpc_control.get_config("quadruped")
  config.tdmpc.update(dict(num_envs=4, batch_size=16, grad_updates_per_step=2, replay_capacity=512,
                           min_replay=16, steps_per_iteration=8, num_iterations=ITERATIONS,
                           latent_dim=16, mlp_dim=16, enc_dim=16))
  config.tdmpc.mppi.update(dict(num_samples=16, num_elites=4, num_prior_samples=4, iterations=2))
  return config, config.tdmpc, tdmpc


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sac", "tdmpc"])
def test_quadruped_preset_trains_and_loads(kind, tmp_path):
  config, learner_config, module = _shrunk(kind)
  config.run.update(dict(eval_every=ITERATIONS, num_eval_envs=2, checkpoint_every=ITERATIONS))
  assert config.env_name == "quadruped_joystick"
  env = envs.make(config.env_name, config=config.env)
  learner = module.Learner(env, learner_config, mesh_lib.make_mesh({"data": -1}))
  state = loop.train(learner, config.run, tmp_path, ITERATIONS,
                     metadata={"config": config.to_dict()}, stream=None)
  assert int(state.iteration) == ITERATIONS
  assert int(state.replay.num_transitions) == ITERATIONS * learner.env_steps_per_iteration
  logged = (tmp_path / "metrics.jsonl").read_text()
  assert '"eval/episode_return"' in logged
  if kind == "tdmpc":
    assert '"loss/termination"' in logged       # the preset is episodic
  policy, info = module.load_policy(tmp_path)
  obs = jax.jit(env.reset)(jax.random.PRNGKey(1)).obs
  action = np.asarray(policy(obs))
  assert action.shape == (env.action_size,) and np.all(np.isfinite(action))
  assert np.all(np.abs(action) <= 1.0)
