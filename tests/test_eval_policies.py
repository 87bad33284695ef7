"""`eval.policies.load` for the SAC and TD-MPC kinds (untrained cart-pole checkpoints written here),
closed loop through `closed_loop.evaluate_policy`; the info keys every loader shares; action
repeat; the `remote` kind's routing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import sac_control, tdmpc_control
from vlajax import envs
from vlajax.core import mesh as mesh_lib
from vlajax.core.checkpoint import Checkpointer
from vlajax.eval import closed_loop, policies
from vlajax.rl import running_stats, sac, tdmpc

EPISODES, LENGTH = 3, 25


def _save(run_dir, tree, config):
  checkpointer = Checkpointer(run_dir / "checkpoints", max_to_keep=1)
  checkpointer.save(1, tree, {"config": config.to_dict()})
  checkpointer.wait()
  checkpointer.close()


def _write_sac(run_dir, action_repeat):
  """An untrained SAC run (the smoke config: cart-pole, one 16-unit layer) with `action_repeat`."""
  config = sac_control.get_config("smoke")
  config.sac.action_repeat = action_repeat
  env = envs.make(config.env_name, config=config.env)
  sizes = env.observation_size
  params = sac.Networks(config.sac, env.action_size).init(jax.random.PRNGKey(0), sizes)
  keys = sorted({config.sac.policy_obs_key, config.sac.critic_obs_key})
  _save(run_dir, {"params": params,
                  "obs_stats": running_stats.init({k: sizes[k] for k in keys})}, config)
  return env


def _write_tdmpc(run_dir):
  """An untrained TD-MPC run (the smoke config: cart-pole, latent 16, 16 samples x 2 iterations)."""
  config = tdmpc_control.get_config("smoke")
  env = envs.make(config.env_name, config=config.env)
  learner = tdmpc.Learner(env, config.tdmpc, mesh_lib.make_mesh({"data": 1},
                                                                devices=jax.devices()[:1]))
  _save(run_dir, {"params": learner.model.init(jax.random.PRNGKey(0)),
                  "obs_stats": running_stats.init({"obs": learner.obs_shape})}, config)
  return env, config


class _Env:
  """Only what the fit check reads: a two-action env, or one whose state has 7 entries."""

  def __init__(self, action_size=1, state=(5,)):
    self.action_size, self.observation_size = action_size, {"state": state}


def _check_shared_info(info, env, kind, repeat=1):
  assert set(policies.INFO_KEYS) <= set(info) and info["kind"] == kind
  assert info["action_size"] == env.action_size == 1 and info["action_horizon"] == 1
  assert info["obs_key"] == "state" and tuple(info["observation_size"]["state"]) == (5,)
  assert info["action_repeat"] == repeat
  assert info["control_hz"] == pytest.approx(1.0 / (env.dt * repeat))


def _check_rollout(env, policy):
  episodes, _ = closed_loop.evaluate_policy(env, policy, seed=2, num_episodes=EPISODES,
                                            episode_length=LENGTH)
  assert episodes.length.shape == (EPISODES,)
  assert np.all((episodes.length >= 1) & (episodes.length <= LENGTH))
  assert np.all(np.isfinite(episodes.episode_return))
  assert np.all(episodes.episode_return > 0.0)   # cart-pole pays +1 per step the pole stays up
  return episodes


def test_sac_kind_loads_checks_and_rolls_out_with_its_action_repeat(tmp_path):
  env = _write_sac(tmp_path, action_repeat=2)
  policy = policies.load("sac", env, str(tmp_path))
  _check_shared_info(policy.info, env, "sac", repeat=2)
  # Trained with action repeat 2: a decision every 2 env steps, held in between.
  carry, actions = policy.init_carry(2), []
  for t in range(4):
    obs = {"state": jax.random.normal(jax.random.PRNGKey(t), (2, 5))}
    action, carry = policy.act(carry, obs, jax.random.PRNGKey(t))
    actions.append(np.asarray(action))
  np.testing.assert_array_equal(actions[0], actions[1])
  np.testing.assert_array_equal(actions[2], actions[3])
  assert not np.allclose(actions[0], actions[2])
  _check_rollout(env, policy)

  with pytest.raises(ValueError, match="the sac policy at .* has action size 1; the env _Env "
                                       "takes 2"):
    policies.load("sac", _Env(action_size=2), str(tmp_path))
  with pytest.raises(ValueError, match="reads 'state' of shape \\(5,\\); the env's is \\(7,\\)"):
    policies.load("sac", _Env(state=(7,)), str(tmp_path))


def test_tdmpc_kind_plans_with_its_warm_start_closed_loop(tmp_path):
  env, config = _write_tdmpc(tmp_path)
  policy = policies.load("tdmpc", env, str(tmp_path), seed=3)
  _check_shared_info(policy.info, env, "tdmpc")
  assert policy.info["plan"]
  plan = policy.init_carry(EPISODES)
  assert plan.shape == (EPISODES, config.tdmpc.horizon, 1)   # the warm start, per env
  _check_rollout(env, policy)
  prior = policies.load("tdmpc", env, str(tmp_path), plan=False)   # the prior's mode, no carry
  assert not prior.info["plan"] and prior.init_carry(EPISODES).shape == ()
  with pytest.raises(ValueError, match="the tdmpc policy at .* has action size 1; the env _Env "
                                       "takes 2"):
    policies.load("tdmpc", _Env(action_size=2), str(tmp_path))


def test_every_kind_shares_the_info_keys_and_remote_is_routed():
  from vlajax.envs.manipulation import experts  # pylint: disable=import-outside-toplevel
  arm = envs.make("arm_reach")
  _, info = experts.load_policy(arm)
  assert set(policies.INFO_KEYS) <= set(info) and info["action_size"] == arm.action_size
  assert info["action_horizon"] == 1 and info["control_hz"] == pytest.approx(1.0 / arm.dt)
  cartpole = envs.make("cartpole")
  info = policies.load("random", cartpole).info
  assert set(policies.INFO_KEYS) <= set(info) and info["action_horizon"] == 1
  assert "remote" in policies.KINDS
  with pytest.raises(ValueError, match="'nope' unknown .*'remote'"):
    policies.load("nope", cartpole)
  with pytest.raises(ValueError, match="'remote' is evaluated through the bridge"):
    policies.load("remote", cartpole, "127.0.0.1:1")


def test_served_policy_info_from_metadata():
  class Client:
    metadata = {"action_spec": {"actions": {"shape": [4, 7], "dtype": "float32"}},
                "chunk_length": 4, "control_hz": 20.0, "model_id": "m", "env_name": "arm_reach",
                "observation_spec": {"state": {"shape": [31], "dtype": "float32"}}}

    def infer(self, obs):
      return {"actions": jnp.zeros((4, 7))}

  planner, info = policies.served_policy(Client())
  assert set(policies.INFO_KEYS) <= set(info)
  assert (info["action_size"], info["action_horizon"], info["control_hz"]) == (7, 4, 20.0)
  assert info["observation_size"] == {"state": (31,)} and info["env_name"] == "arm_reach"
  assert planner({"state": np.zeros(31)}).shape == (4, 7)
