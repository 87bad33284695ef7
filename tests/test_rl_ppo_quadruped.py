"""PPO on the randomized quadruped with automatic DR: ranges widen and are logged; policy loads."""
import jax
import numpy as np

from experiments.configs import ppo_locomotion as configs
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.rl import loop, ppo


def test_ppo_quadruped_with_adr_widens_ranges_and_loads_policy(tmp_path):
  config = configs.get_config("smoke_quadruped")
  # Thresholds below any achievable performance: every update must widen the adaptive ranges.
  config.adr.low_threshold = -2.0
  config.adr.high_threshold = -1.0
  env = envs.make(config.env_name, config=config.env)
  learner = ppo.Learner(env, config.ppo, mesh_lib.make_mesh({"data": -1}), adr_config=config.adr)
  state = learner.init(jax.random.PRNGKey(0))
  initial = {k: np.asarray(v) for k, v in env.default_dr_ranges().items()}
  state = loop.train(learner, config.run, tmp_path, config.ppo.num_iterations,
                     metadata={"config": config.to_dict()}, stream=None)
  assert int(state.adr.num_widened) == config.ppo.num_iterations
  friction = np.asarray(state.env_state.info["dr_ranges"]["floor_friction"])
  step = config.adr.steps.floor_friction * config.ppo.num_iterations
  np.testing.assert_allclose(friction[:, 0], initial["floor_friction"][0] - step, atol=1e-6)
  np.testing.assert_allclose(friction[:, 1], initial["floor_friction"][1] + step, atol=1e-6)
  logged = (tmp_path / "metrics.jsonl").read_text()
  assert '"dr/floor_friction/high"' in logged and '"reward/tracking_lin_vel"' in logged

  policy, info = ppo.load_policy(tmp_path)
  assert info["action_size"] == env.action_size and info["obs_key"] == "state"
  obs = jax.tree.map(lambda x: x[0], state.env_state.obs)   # one env's real observation
  action = np.asarray(policy(obs))
  assert action.shape == (env.action_size,) and np.all(np.abs(action) <= 1.0)
