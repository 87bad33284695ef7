"""Frames/s of the data pipeline reading a LeRobot v3 dataset against the RLDS one it was made from.

  python benchmarks/lerobot_source.py                        # CPU-sized defaults
  python benchmarks/lerobot_source.py --episodes 64 --batch 256 --threads 16 --rounds 3

Writes an RLDS dataset in the `fractal20220817_data` on-disk layout (JPEG 256x320 camera, as
benchmarks/data_throughput.py does), converts it to LeRobot v3 with
`vlajax.data.lerobot_convert.rlds_to_lerobot` (H.264 yuv420p crf 23, `--episodes_per_file`
episodes per parquet / mp4), then times `vlajax.data.loader.DataLoader` on each alone with the same
batch settings (decode + standardize + normalize + chunk + resize + augment + batch + JAX arrays),
alternating RLDS / LeRobot for `--rounds` rounds in one process (the machine's load drifts).
LeRobot frames are decoded by PyAV and scaled to the training size as they are decoded; RLDS JPEGs
are decoded at 256x320 and resized by the frame transforms. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

# The RLDS side is data_throughput.py's dataset (this script's directory is on sys.path).
from data_throughput import _write as write_rlds  # pylint: disable=g-import-not-at-top


def _config(root: str, weights: dict, lerobot_dirs: dict, args):
  from vlajax.data import config as data_config  # pylint: disable=g-import-not-at-top
  cfg = data_config.default_config()
  cfg.data_root = root
  cfg.weights = weights
  cfg.lerobot_dirs = lerobot_dirs
  cfg.train_split = "train"
  cfg.image_size = (args.image, args.image)
  cfg.global_batch_size = args.batch
  cfg.horizon = args.horizon
  cfg.augment = not args.no_augment
  cfg.num_parallel_calls = args.threads
  cfg.episodes_per_window = 2
  cfg.windows_per_block = 4
  return cfg


def _measure(cfg, stats_dir: str, seconds: float) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from vlajax.data import loader as loader_lib  # pylint: disable=g-import-not-at-top
  built = time.perf_counter()
  loader = loader_lib.DataLoader(cfg, stats_dir=stats_dir, process_index=0, process_count=1)
  build_s = time.perf_counter() - built
  for _ in range(2):                                  # warm-up (graph tracing, first block)
    jax.block_until_ready(next(loader)["action"])
  frames, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    batch = next(loader)
    jax.block_until_ready(batch["observation"]["image_primary"])
    frames += batch["action"].shape[0]
  return {"frames_per_s": frames / (time.perf_counter() - start), "build_s": build_s,
          "shapes": {"image_primary": list(batch["observation"]["image_primary"].shape),
                     "action": list(batch["action"].shape)}}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--episodes", type=int, default=16)
  parser.add_argument("--length", type=int, default=30)
  parser.add_argument("--src_hw", type=int, nargs=2, default=(256, 320), help="on-disk image h w")
  parser.add_argument("--fps", type=float, default=3.0, help="recorded LeRobot frame rate")
  parser.add_argument("--episodes_per_file", type=int, default=8)
  parser.add_argument("--image", type=int, default=224, help="training image size")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--horizon", type=int, default=4)
  parser.add_argument("--threads", type=int, default=4)
  parser.add_argument("--seconds", type=float, default=15.0, help="timed seconds per measurement")
  parser.add_argument("--rounds", type=int, default=2, help="alternating RLDS / LeRobot rounds")
  parser.add_argument("--no_augment", action="store_true")
  parser.add_argument("--data_dir", default="", help="reuse/keep the generated data here")
  args = parser.parse_args()

  from vlajax.data import lerobot, lerobot_convert  # pylint: disable=g-import-not-at-top
  root = args.data_dir or tempfile.mkdtemp(prefix="lerobot_source_")
  rlds_dir = os.path.join(root, "fractal20220817_data", "0.1.0")
  if not os.path.exists(os.path.join(rlds_dir, "dataset_info.json")):
    rlds_dir = write_rlds(root, args.episodes, args.length, tuple(args.src_hw), seed=0)
  lerobot_dir = os.path.join(root, "fractal_lerobot")
  convert_s = 0.0
  if not lerobot.is_lerobot_dir(lerobot_dir):
    start = time.perf_counter()
    lerobot_convert.rlds_to_lerobot(rlds_dir, "fractal20220817_data", lerobot_dir, fps=args.fps,
                                    episodes_per_data_file=args.episodes_per_file,
                                    episodes_per_video_file=args.episodes_per_file)
    convert_s = time.perf_counter() - start
  stats_dir = os.path.join(root, "stats")
  configs = {
      "rlds": _config(root, {"fractal20220817_data": 1.0}, {}, args),
      "lerobot": _config(root, {"fractal_lerobot": 1.0}, {"fractal_lerobot": lerobot_dir}, args),
  }
  rounds = []
  for _ in range(args.rounds):
    rounds.append({name: _measure(cfg, stats_dir, args.seconds) for name, cfg in configs.items()})
  rates = {name: [r[name]["frames_per_s"] for r in rounds] for name in configs}
  ratios = [r["lerobot"]["frames_per_s"] / r["rlds"]["frames_per_s"] for r in rounds]
  mp4_mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lerobot_dir)
               for f in fs if f.endswith(".mp4")) / 2**20
  rlds_mb = sum(os.path.getsize(os.path.join(rlds_dir, f)) for f in os.listdir(rlds_dir)) / 2**20
  result = {
      "benchmark": "lerobot_source",
      "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
      "dataset": {"layout": "fractal20220817_data", "episodes": args.episodes,
                  "length": args.length, "on_disk_image": list(args.src_hw),
                  "rlds": "jpeg in tfrecord", "lerobot": "h264 yuv420p crf 23 mp4 + parquet",
                  "rlds_mb": round(rlds_mb, 2), "lerobot_mp4_mb": round(mp4_mb, 2),
                  "episodes_per_file": args.episodes_per_file},
      "config": {"image": args.image, "batch": args.batch, "horizon": args.horizon,
                 "augment": not args.no_augment, "threads": args.threads,
                 "seconds": args.seconds, "rounds": args.rounds},
      "rlds_frames_per_s": [round(x, 1) for x in rates["rlds"]],
      "lerobot_frames_per_s": [round(x, 1) for x in rates["lerobot"]],
      "ratio_lerobot_over_rlds": [round(x, 3) for x in ratios],
      "mean_ratio": round(float(np.mean(ratios)), 3),
      "build_s": {name: round(rounds[0][name]["build_s"], 2) for name in configs},
      "convert_s": round(convert_s, 2),
      "batch_shapes": rounds[0]["lerobot"]["shapes"],
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
