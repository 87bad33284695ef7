"""Cart-pole balance / swing-up on our own MJCF: the cheap env that learner tests solve.

Observation `state`: f32[5] = (x, cos θ, sin θ, ẋ, θ̇); `privileged_state` adds the noise-free copy
and the pole tip height (f32[11]). Action f32[1] in [-1, 1] (motor force × 10 N). The reward is a
smooth product in [0, 1] per step (upright × centered × small control × small velocity), so an
episode's return is at most `episode_length`. Balance episodes terminate when the pole passes
`fall_angle` or the cart leaves the rail.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from mujoco import mjx

from vlajax.envs import assets
from vlajax.envs.base import Env, State


class Cartpole(Env):
  """Cart-pole; `swing_up=True` starts hanging down (no termination), else near upright."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config, assets.load("cartpole"))

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "ctrl_dt": 0.02,
        "sim_dt": 0.01,
        "episode_length": 500,
        "swing_up": False,
        "init_angle_noise": 0.1,   # rad, uniform ± around the start pose
        "init_pos_noise": 0.1,     # m
        "fall_angle": 0.8,         # rad; balance only
        "obs_noise": 0.0,          # std of Gaussian noise on `state`
        "reward_config": {"scales": {"upright": 1.0, "centered": 1.0, "small_control": 1.0,
                                     "small_velocity": 1.0}},
        # Physics backend (vlajax.envs.backend). Contacts are disabled in the MJCF, and the only
        # constraint is the rail limit (1 row), so Warp's buffers stay tiny.
        "impl": "jax",
        "naconmax_per_env": 0,
        "njmax": 4,
    })

  def reset(self, rng: jax.Array) -> State:
    rng, k_pos, k_ang, k_vel = jax.random.split(rng, 4)
    cfg = self.config
    start_angle = jnp.pi if cfg.swing_up else 0.0
    qpos = jnp.array([
        jax.random.uniform(k_pos, (), minval=-cfg.init_pos_noise, maxval=cfg.init_pos_noise),
        start_angle + jax.random.uniform(k_ang, (), minval=-cfg.init_angle_noise,
                                         maxval=cfg.init_angle_noise)])
    qvel = 0.01 * jax.random.normal(k_vel, (2,))
    data = self.make_data().replace(qpos=qpos, qvel=qvel)
    data = mjx.forward(self.mjx_model, data)
    info = {"rng": rng}
    terms = self._reward_terms(data, jnp.zeros(1))
    metrics = {f"reward/{k}": jnp.zeros(()) for k in terms}
    obs = self._observe(data, rng)
    return State(data, obs, jnp.zeros(()), jnp.zeros(()), metrics, info)

  def step(self, state: State, action: jax.Array) -> State:
    action = jnp.clip(action, -1.0, 1.0)
    data = self.physics_step(self.mjx_model, state.data, action)
    rng, k_noise = jax.random.split(state.info["rng"])
    terms = self._reward_terms(data, action)
    scales = self.config.reward_config.scales
    reward = jnp.ones(())
    for name, value in terms.items():
      reward = reward * value ** scales[name]
    x, angle = data.qpos[0], data.qpos[1]
    fallen = (jnp.cos(angle) < jnp.cos(self.config.fall_angle)) | (jnp.abs(x) > 1.8)
    done = jnp.where(self.config.swing_up, False, fallen).astype(jnp.float32)
    done = jnp.maximum(done, jnp.any(~jnp.isfinite(data.qpos)).astype(jnp.float32))
    metrics = {f"reward/{k}": v for k, v in terms.items()}
    info = {**state.info, "rng": rng}
    return State(data, self._observe(data, k_noise), reward, done, metrics, info)

  def _reward_terms(self, data: mjx.Data, action: jax.Array) -> dict[str, jax.Array]:
    """Each term in [0, 1]; the reward is their (scale-weighted) product."""
    x, angle = data.qpos[0], data.qpos[1]
    return {
        "upright": (jnp.cos(angle) + 1.0) / 2.0,
        "centered": (1.0 + jnp.exp(-0.5 * x ** 2)) / 2.0,
        "small_control": (4.0 + 1.0 - jnp.square(action[0])) / 5.0,
        "small_velocity": (1.0 + jnp.exp(-0.1 * data.qvel[1] ** 2)) / 2.0,
    }

  def _observe(self, data: mjx.Data, rng: jax.Array) -> dict[str, jax.Array]:
    x, angle = data.qpos[0], data.qpos[1]
    clean = jnp.stack([x, jnp.cos(angle), jnp.sin(angle), data.qvel[0], data.qvel[1]])
    noisy = clean + self.config.obs_noise * jax.random.normal(rng, clean.shape)
    tip_height = jnp.cos(angle)[None]
    return {"state": noisy, "privileged_state": jnp.concatenate([noisy, clean, tip_height])}
