"""Examples/s of the full data pipeline against plain tfds iteration of the same RLDS files.

  python benchmarks/data_throughput.py                       # CPU-sized defaults
  python benchmarks/data_throughput.py --episodes 64 --batch 256 --batches 50 --threads 16

Writes a fractal20220817_data-layout dataset (JPEG 256x320 camera, as on disk) to a temporary
directory, then measures in the same process:
  plain:    `builder.as_dataset()` -> steps -> images decoded by tfds, batched (frames/s)
  pipeline: `vlajax.data.loader.DataLoader` (decode + standardize + normalize + chunk + resize to
            --image + augment + batch + JAX arrays sharded over the devices) (examples/s)
Prints one JSON object; `--train_examples_per_s` (e.g. from benchmarks/vla.py) adds whether the
pipeline keeps up with training.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def _write(root: str, episodes: int, length: int, image_hw: tuple[int, int], seed: int) -> str:
  from vlajax.data import oxe_specs, writer  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  eps = []
  for k in range(episodes):
    ep = oxe_specs.random_episode("fractal20220817_data", length, rng, image_size=image_hw)
    # Smooth images compress like camera frames (random noise would make JPEG decode atypical).
    base = np.linspace(0, 255, image_hw[1], dtype=np.float32)[None, :, None]
    ep["steps"]["observation"]["image"] = np.clip(
        base + rng.normal(0, 8, (length, *image_hw, 3)) + k, 0, 255).astype(np.uint8)
    ep["steps"]["observation"]["natural_language_instruction"] = [f"pick {k}".encode()] * length
    eps.append(ep)
  features = oxe_specs.tfds_features("fractal20220817_data", image_hw, image_format="jpeg")
  return writer.write_rlds(root, "fractal20220817_data", {"train": eps}, features=features,
                           num_shards=max(1, episodes // 8))


def _plain_tfds(directory: str, batch: int, seconds: float) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(directory)
  ds = builder.as_dataset(split="train").repeat()
  ds = ds.flat_map(lambda ep: ep["steps"]).batch(batch).prefetch(2)
  it = iter(tfds.as_numpy(ds))
  next(it)
  frames, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    frames += len(next(it)["reward"])
  del tf
  return {"frames_per_s": frames / (time.perf_counter() - start), "frames": frames}


def _pipeline(root: str, args) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from vlajax.data import config as data_config  # pylint: disable=g-import-not-at-top
  from vlajax.data import loader as loader_lib  # pylint: disable=g-import-not-at-top
  cfg = data_config.default_config()
  cfg.data_root = root
  cfg.weights = {"fractal20220817_data": 1.0}
  cfg.train_split = "train"
  cfg.image_size = (args.image, args.image)
  cfg.global_batch_size = args.batch
  cfg.horizon = args.horizon
  cfg.window = args.window
  cfg.augment = not args.no_augment
  cfg.num_parallel_calls = args.threads
  cfg.episodes_per_window = 2
  cfg.windows_per_block = 4
  built = time.perf_counter()
  loader = loader_lib.DataLoader(cfg, stats_dir=os.path.join(root, "stats"))
  build_s = time.perf_counter() - built
  for _ in range(2):                                  # warm-up (graph tracing, first block)
    jax.block_until_ready(next(loader)["action"])
  examples, start = 0, time.perf_counter()
  while time.perf_counter() - start < args.seconds:
    batch = next(loader)
    jax.block_until_ready(batch["observation"]["image_primary"])
    examples += batch["action"].shape[0]
  elapsed = time.perf_counter() - start
  return {"examples_per_s": examples / elapsed, "examples": examples, "build_s": build_s,
          "batch_shapes": {"image_primary": list(batch["observation"]["image_primary"].shape),
                           "action": list(batch["action"].shape)},
          "devices": len(jax.devices())}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--episodes", type=int, default=16)
  parser.add_argument("--length", type=int, default=30)
  parser.add_argument("--src_hw", type=int, nargs=2, default=(256, 320), help="on-disk image h w")
  parser.add_argument("--image", type=int, default=224, help="training image size")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--horizon", type=int, default=4)
  parser.add_argument("--window", type=int, default=1)
  parser.add_argument("--threads", type=int, default=4)
  parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
  parser.add_argument("--no_augment", action="store_true")
  parser.add_argument("--data_dir", default="", help="reuse/keep the generated data here")
  parser.add_argument("--train_examples_per_s", type=float, default=0.0,
                      help="training consumption to compare with (e.g. from benchmarks/vla.py)")
  args = parser.parse_args()

  root = args.data_dir or tempfile.mkdtemp(prefix="data_throughput_")
  directory = os.path.join(root, "fractal20220817_data", "0.1.0")
  if not os.path.exists(os.path.join(directory, "dataset_info.json")):
    directory = _write(root, args.episodes, args.length, tuple(args.src_hw), seed=0)
  plain = _plain_tfds(directory, args.batch, args.seconds)
  pipeline = _pipeline(root, args)
  result = {
      "benchmark": "data_throughput",
      "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
      "dataset": {"layout": "fractal20220817_data", "episodes": args.episodes,
                  "length": args.length, "on_disk_image": list(args.src_hw), "format": "jpeg"},
      "config": {"image": args.image, "batch": args.batch, "horizon": args.horizon,
                 "window": args.window, "augment": not args.no_augment, "threads": args.threads},
      "plain_tfds_frames_per_s": round(plain["frames_per_s"], 1),
      "pipeline_examples_per_s": round(pipeline["examples_per_s"], 1),
      "ratio_pipeline_over_plain": round(pipeline["examples_per_s"] / plain["frames_per_s"], 3),
      "pipeline_build_s": round(pipeline["build_s"], 2),
      "batch_shapes": pipeline["batch_shapes"], "devices": pipeline["devices"],
  }
  if args.train_examples_per_s > 0:
    result["train_examples_per_s"] = args.train_examples_per_s
    result["keeps_up"] = pipeline["examples_per_s"] >= args.train_examples_per_s
  print(json.dumps(result))


if __name__ == "__main__":
  main()
