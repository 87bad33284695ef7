"""Robot-bridge benchmark: latency the server + client add, and control-loop jitter with a slow policy.

  python benchmarks/bridge.py                               # CPU-sized defaults
  python benchmarks/bridge.py --image=224 --hidden=1024 --requests=500 --seconds=20   # bigger

1. `added_latency`: the same jitted MLP policy (state + one uint8 camera image -> H x D chunk) called
   in-process (`ServedPolicy.infer`) and over a real WebSocket (`PolicyClient.infer` against
   `PolicyServer` on localhost); median / p99 of both and of the difference.
2. `control_loop`: the async executor drives the native-MuJoCo arm at `--control_hz` while the policy,
   served over the socket, takes `--slow_ms` per chunk (more than one control period). Reports the
   achieved tick rate, tick jitter (actual - scheduled send time) and how often the queue ran dry.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vlajax.bridge import policies  # noqa: E402  pylint: disable=wrong-import-position
from vlajax.bridge.client import PolicyClient  # noqa: E402  pylint: disable=wrong-import-position
from vlajax.bridge.executor import ChunkExecutor, ExecutorConfig, planner_from_client  # noqa: E402
from vlajax.bridge.robots import make_arm6_robot  # noqa: E402  pylint: disable=wrong-import-position
from vlajax.bridge.server import PolicyServer  # noqa: E402  pylint: disable=wrong-import-position


def make_policy(image: int, hidden: int, horizon: int, action_dim: int, slow_ms: float = 0.0):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  w_img = jax.random.normal(k1, (3, hidden)) * 0.1
  w_state = jax.random.normal(k2, (6, hidden)) * 0.1
  w_out = jax.random.normal(k3, (hidden, horizon * action_dim)) * 0.01
  home = jnp.array([0.0, -0.4, 1.2, 0.8, 0.7, 0.0])

  @jax.jit
  def chunk(state, img):
    pooled = jnp.mean(img.astype(jnp.float32) / 255.0, axis=(0, 1))
    feat = jnp.tanh(pooled @ w_img + state @ w_state)
    return home + jnp.tanh(feat @ w_out).reshape(horizon, action_dim) * 0.05

  def infer(obs):
    start = time.perf_counter()
    out = np.asarray(chunk(obs["joint_pos"], obs["image"]))
    remaining = slow_ms / 1e3 - (time.perf_counter() - start)
    if remaining > 0:
      time.sleep(remaining)
    return out

  spec = {"joint_pos": ((6,), "float32"), "image": ((image, image, 3), "uint8")}
  return policies.load_policy("callable", fn=infer, observation_spec=spec, action_dim=action_dim,
                              chunk_length=horizon, model_id=f"mlp{hidden}-img{image}")


def _pct(values_ms):
  arr = np.asarray(values_ms)
  return {"median_ms": float(np.median(arr)), "p99_ms": float(np.percentile(arr, 99)),
          "max_ms": float(arr.max())}


def added_latency(args) -> dict:
  policy = make_policy(args.image, args.hidden, args.horizon, 6)
  rng = np.random.default_rng(0)
  obs = {"joint_pos": rng.normal(size=6).astype(np.float32),
         "image": rng.integers(0, 255, (args.image, args.image, 3), dtype=np.uint8)}
  local, remote = [], []
  with PolicyServer(policy, "127.0.0.1", 0) as server, PolicyClient("127.0.0.1", server.port) as client:
    for _ in range(10):
      client.infer(obs)
    for _ in range(args.requests):  # interleaved so both see the same machine load
      t = time.perf_counter()
      policy.infer(obs)
      local.append((time.perf_counter() - t) * 1e3)
      t = time.perf_counter()
      client.infer(obs)
      remote.append((time.perf_counter() - t) * 1e3)
  added = np.asarray(remote) - np.asarray(local)
  return {"requests": args.requests, "frame_bytes": int(args.image * args.image * 3 + 24),
          "in_process": _pct(local), "over_websocket": _pct(remote),
          "added": {"median_ms": float(np.median(remote) - np.median(local)),
                    "p99_ms": float(np.percentile(remote, 99) - np.percentile(local, 99)),
                    "paired_median_ms": float(np.median(added))}}


def control_loop(args) -> dict:
  policy = make_policy(args.image, args.hidden, args.horizon, 6, slow_ms=args.slow_ms)
  robot = make_arm6_robot(control_hz=args.control_hz)
  image = np.zeros((args.image, args.image, 3), np.uint8)

  class WithCamera:  # the arm has no camera: attach a constant image to its observation
    def __init__(self, inner):
      self.inner = inner

    def infer(self, obs):
      return self.inner.infer({"joint_pos": obs["joint_pos"], "image": image})

  cfg = ExecutorConfig(control_hz=args.control_hz, chunk_length=args.horizon,
                       refill_threshold=args.refill, merge=args.merge, stop_after_s=2.0)
  with PolicyServer(policy, "127.0.0.1", 0) as server, PolicyClient("127.0.0.1", server.port) as client:
    executor = ChunkExecutor(robot, planner_from_client(WithCamera(client)), cfg)
    executor.start()
    start = executor._start_time  # pylint: disable=protected-access
    time.sleep(args.seconds)
    executor.halt()
    elapsed = time.perf_counter() - start
  robot.close()
  stats = executor.stats()
  return {"control_hz": args.control_hz, "period_ms": 1e3 / args.control_hz, "policy_ms": args.slow_ms,
          "chunk_length": args.horizon, "refill_threshold": args.refill, "merge": args.merge,
          "seconds": elapsed, "achieved_hz": len(executor.records) / elapsed,
          "ticks_expected": elapsed * args.control_hz, "ticks_sent": len(executor.records),
          "jitter_ms_p50": stats["jitter_ms_p50"], "jitter_ms_p99": stats["jitter_ms_p99"],
          "jitter_ms_max": stats["jitter_ms_max"], "inference_ms_p50": stats["latency_ms_p50"],
          "inference_ms_p99": stats["latency_ms_p99"], "hold_ticks": stats["hold_ticks"],
          "missed_ticks": stats["missed_ticks"], "latency_warnings": stats["latency_warnings"],
          "chunks": stats["chunks"], "safety_margin_ms": stats["safety_margin_ms"]}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--image", type=int, default=64, help="camera image side (uint8 HxWx3)")
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--horizon", type=int, default=16, help="chunk length H")
  parser.add_argument("--requests", type=int, default=300)
  parser.add_argument("--control_hz", type=float, default=50.0)
  parser.add_argument("--slow_ms", type=float, default=45.0, help="policy latency for the jitter test")
  parser.add_argument("--refill", type=float, default=0.5, help="refill threshold g")
  parser.add_argument("--merge", default="ensemble")
  parser.add_argument("--seconds", type=float, default=10.0)
  args = parser.parse_args()
  result = {"machine": platform.node(), "cpus": os.cpu_count(), "jax_backend": jax.default_backend(),
            "added_latency": added_latency(args), "control_loop": control_loop(args)}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
