"""Serve a trained policy over WebSocket (openpi-compatible protocol, see `vlajax.bridge.protocol`).

  python -m experiments.serve_policy --config=experiments/configs/serve_policy.py:ppo \
      --config.policy.path=runs/ppo_cpu
  python -m experiments.serve_policy --config=experiments/configs/serve_policy.py:demo --config.server.port=9000

The policy is loaded and jit-warmed before the port opens; `GET /healthz` answers 200 once serving.
The server binds 127.0.0.1 unless `--config.server.host=0.0.0.0` (or an interface address) is
given; `--config.server.api_key=<key>` makes every connection present `Authorization: Api-Key <key>`
(`/healthz` stays open). Errors reach clients as one line; tracebacks go to this process's log.
"""
from absl import app
from ml_collections import config_flags

from vlajax.bridge import policies
from vlajax.bridge.server import PolicyServer
from vlajax.core import logging_setup



def policy_kwargs(policy_config) -> dict:
  """The loader arguments of `config.policy` (without `kind`); unset optional values dropped."""
  kwargs = policy_config.to_dict()
  kind = kwargs.pop("kind")
  if kind in ("ppo", "vla") and not kwargs.get("path"):
    raise ValueError(f"config.policy.path is required for a '{kind}' policy")
  if kwargs.get("step") == -1:  # -1: the newest checkpoint
    kwargs.pop("step")
  for optional in ("model_id", "control_hz"):
    if not kwargs.get(optional):
      kwargs.pop(optional, None)
  return kwargs


def main(argv):
  del argv
  config = _CONFIG.value
  # The server's own INFO lines stay on the console; library INFO goes to <policy run dir>/serve_policy.log.
  logging_setup.setup(logging_setup.run_dir_of(config.policy.get("path")))
  kind = config.policy.kind
  policy = policies.load_policy(kind, warmup=False, **policy_kwargs(config.policy))
  seconds = policy.warmup()
  print(f"loaded {kind} policy {policy.model_id}: observation {policy.observation_spec}, "
        f"chunk {policy.chunk_length} x {policy.action_dim} at {policy.control_hz} Hz "
        f"(jit warm-up {seconds:.1f}s)", flush=True)
  server = PolicyServer(policy, config.server.host, config.server.port,
                        max_frame_bytes=int(config.server.max_frame_mib * 2**20),
                        workers=config.server.workers, log_every=config.server.log_every,
                        api_key=config.server.api_key or None)
  print(f"serving on ws://{config.server.host}:{config.server.port} (GET /healthz; API key "
        f"{'required' if config.server.api_key else 'off'})", flush=True)
  server.serve_forever()


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  _CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/serve_policy.py:ppo",
                                            "Server config file and preset name.")
  app.run(main)
