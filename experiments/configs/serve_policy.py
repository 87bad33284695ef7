"""Configs for `python -m experiments.serve_policy --config=experiments/configs/serve_policy.py:<name>`.

Names:
  ppo   a PPO run directory:  --config.policy.path=runs/ppo_cpu
  vla   a train_vla run:      --config.policy.path=runs/vla_tiny  (observation: image/<camera> uint8,
        state, prompt; see `vlajax.vla.policy`)
  demo  a built-in jitted toy policy (6-D state -> 8 x 6 chunk), for trying the bridge end to end.

Any key can be overridden, e.g. `--config.server.port=9000 --config.server.max_frame_mib=10`.

The server listens on 127.0.0.1 (this machine only). To serve robots on other machines:
`--config.server.host=0.0.0.0` (all interfaces) or one interface's address, together with
`--config.server.api_key=<key>`: clients then send `Authorization: Api-Key <key>` on connect
(`PolicyClient(..., api_key=...)`, openpi-client's `api_key`), others are refused with HTTP 401.
"""
import jax
import jax.numpy as jnp
import ml_collections


def get_config(name: str = "ppo") -> ml_collections.ConfigDict:
  presets = {"ppo": _ppo, "vla": _vla, "demo": _demo}
  if name not in presets:
    raise KeyError(f"unknown serve_policy config '{name}' (have: {', '.join(sorted(presets))})")
  config = ml_collections.ConfigDict()
  config.server = ml_collections.ConfigDict({
      "host": "127.0.0.1",       # loopback only; 0.0.0.0 exposes it on every interface
      "port": 8000,              # openpi's default
      "api_key": "",             # "": no key; else the handshake needs "Authorization: Api-Key <key>"
      "max_frame_mib": 50.0,     # requests above this are refused (connection closed with 1009)
      "workers": 4,              # inference threads
      "log_every": 100,          # log latency statistics every N requests (0: never)
  })
  config.policy = presets[name]()
  return config


def _ppo() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"kind": "ppo", "path": "", "step": -1, "control_hz": 0.0,
                                    "model_id": ""})


def _vla() -> ml_collections.ConfigDict:
  # `vlajax.vla.load_policy` options: EMA or raw params, Euler steps, "text" prompts (tokenized with
  # the run's tokenizer) or pre-tokenized "tokens", and which dataset's action units to serve (needed
  # when the run mixed datasets; "" = its only one). control_hz 0: the run's, else 10 Hz.
  return ml_collections.ConfigDict({"kind": "vla", "path": "", "step": -1, "control_hz": 0.0,
                                    "model_id": "", "use_ema": True, "num_steps": 10,
                                    "prompt": "text", "dataset_name": ""})


def _demo() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "kind": "callable", "fn": "experiments.configs.serve_policy:demo_policy",
      "observation_spec": {"state": {"shape": (6,), "dtype": "float32"}},
      "action_dim": 6, "chunk_length": 8, "control_hz": 50.0, "model_id": "demo-sine",
  })


@jax.jit
def _demo_chunk(state):
  steps = jnp.arange(8, dtype=jnp.float32)[:, None]
  return state[None, :] + 0.05 * jnp.sin(0.3 * steps + state[None, :])


def demo_policy(observation):
  """Toy chunk policy: small sinusoidal offsets around the current state, float32[8, 6]."""
  return _demo_chunk(observation["state"])
