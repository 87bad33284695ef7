"""VLA throughput: training examples/s, MFU against a matmul peak measured in the same run, and
action-chunk inference latency with and without the prefix KV cache. Prints one JSON object.

  python benchmarks/vla.py                                   # CPU defaults: tiny + small (112 px)
  python benchmarks/vla.py --presets=small,pi0 --batch_size=32 --dtype=bfloat16 --image_size=224 \
      --peak_size=8192 --train_steps=20                      # accelerator

MFU = analytic model FLOPs per second (``vlajax.vla.flops``: 3x forward per training example)
divided by the peak FLOP/s of a large square matmul in the same dtype on the same device.
``--text_loss_weight=1`` adds the train step with the co-training text loss. ``state_memory`` counts
the train-state bytes (params + EMA + Adam moments) per freeze option under float32 / bfloat16
compute with ``jax.eval_shape`` (frozen leaves are stored in bfloat16 under bfloat16 compute).
"""
from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments import train_vla
from experiments.configs import train_vla as train_vla_configs
from vlajax.core import mesh as mesh_lib
from vlajax.imitation import train as imitation_train
from vlajax.vla import batch as batch_lib
from vlajax.vla import config as vla_config
from vlajax.vla import flops as flops_lib
from vlajax.vla import train as vla_train
from vlajax.vla.pi0 import Pi0
from vlajax.vla.synthetic import SyntheticVLADataset

_PRESETS = flags.DEFINE_list("presets", ["tiny", "small"], "Model presets to measure.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Training batch size (0 = 8 for tiny, 1 for others).")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Compute dtype (float32 | bfloat16).")
_IMAGE = flags.DEFINE_integer("image_size", 112, "Image size for non-tiny presets (224 = 256 tokens).")
_HORIZON = flags.DEFINE_integer("horizon", 0, "Action horizon override for non-tiny presets (0 = preset).")
_STEPS = flags.DEFINE_integer("train_steps", 3, "Timed training steps per preset.")
_SAMPLE_REPS = flags.DEFINE_integer("sample_reps", 3, "Timed sampling calls per preset and mode.")
_PEAK_SIZE = flags.DEFINE_integer("peak_size", 1024, "Square matmul size for the peak measurement.")
_REMAT = flags.DEFINE_bool("remat", False, "Rematerialize layers in the backward pass.")
_FSDP = flags.DEFINE_integer("fsdp", 1, "fsdp mesh axis size (the rest of the devices go to data).")
_TEXT = flags.DEFINE_float("text_loss_weight", 0.0, "Co-training text loss weight (> 0: also time the "
                           "train step with the text loss on synthetic instruction continuations).")
_MEMORY = flags.DEFINE_list("memory_presets", ["small", "pi0"], "Presets whose train-state bytes per "
                            "freeze option are counted with jax.eval_shape (nothing allocated).")


def _timeit(fn, reps):
  jax.block_until_ready(fn())                     # compile + warm up
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def matmul_peak(size: int, dtype) -> float:
  """FLOP/s of a (size x size) @ (size x size) matmul, chained 4x per call to amortize dispatch."""
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (size, size), dtype) / size

  @jax.jit
  def chain(a, b):
    for _ in range(4):
      a = a @ b
    return a

  seconds = _timeit(lambda: chain(a, b), 5)
  return 4 * 2 * size ** 3 / seconds


def _preset(name):
  if name == "tiny":
    return vla_config.tiny(dtype=_DTYPE.value)
  cfg = vla_config.get_preset(name, dtype=_DTYPE.value)
  vision = vla_config.VisionConfig(**{**cfg.vision.__dict__, "image_size": _IMAGE.value})
  horizon = _HORIZON.value or cfg.action_horizon
  return cfg.replace(vision=vision, action_horizon=horizon)


def _optim(**fields) -> imitation_train.OptimConfig:
  """The VLA config's optimizer (openpi's recipe) with `fields` changed."""
  optim = imitation_train.optim_config(train_vla_configs.get_config("pi0").optim)
  return dataclasses.replace(optim, **fields)


def measure(name: str, peak: float) -> dict:
  cfg = _preset(name)
  model = Pi0(cfg, remat=_REMAT.value)
  batch_size = _BATCH.value or (8 if name == "tiny" else 1)
  mesh = mesh_lib.make_mesh({"data": -1, "fsdp": _FSDP.value})
  batch_size = max(batch_size, mesh_lib.num_batch_shards(mesh))
  optim = _optim(peak_lr=1e-4, warmup_steps=10, ema_decay=None)
  data = SyntheticVLADataset(cfg, max(batch_size, 2), seed=0)
  batch = mesh_lib.shard_batch(batch_lib.to_head_batch(data.batch(0, batch_size)), mesh)

  start = time.perf_counter()
  trainer = train_vla.make_trainer(model, optim, mesh, min_shard_size=2 ** 14)
  state = trainer.init(jax.random.PRNGKey(0))
  jax.block_until_ready(state)
  init_s = time.perf_counter() - start
  holder = {"state": state}

  def train_step():
    holder["state"], metrics = trainer.step(holder["state"], batch)
    return metrics["loss"]

  start = time.perf_counter()
  jax.block_until_ready(train_step())
  compile_s = time.perf_counter() - start
  step_s = _timeit(train_step, _STEPS.value)
  examples_per_s = batch_size / step_s
  model_flops = flops_lib.train_flops(cfg)
  result = {
      "preset": name, "params": int(sum(x.size for x in jax.tree.leaves(holder["state"].params))),
      "image_size": cfg.vision.image_size, "prefix_tokens": cfg.prefix_len, "suffix_tokens": cfg.suffix_len,
      "batch_size": batch_size, "dtype": cfg.dtype, "init_s": round(init_s, 2),
      "train_compile_s": round(compile_s, 2), "train_step_s": step_s, "train_examples_per_s": examples_per_s,
      "model_train_gflops_per_example": model_flops / 1e9,
      "mfu": examples_per_s * model_flops / peak,
  }
  if _TEXT.value > 0:
    text_model = Pi0(cfg.replace(text_loss_weight=_TEXT.value), remat=_REMAT.value)
    text_data = SyntheticVLADataset(cfg, max(batch_size, 2), seed=0, text_targets=True)
    text_batch = mesh_lib.shard_batch(batch_lib.to_head_batch(text_data.batch(0, batch_size)), mesh)
    text_trainer = train_vla.make_trainer(text_model, optim, mesh, min_shard_size=2 ** 14)
    text_state = text_trainer.init(jax.random.PRNGKey(0))
    text_holder = {"state": text_state}

    def text_step():
      text_holder["state"], metrics = text_trainer.step(text_holder["state"], text_batch)
      return metrics["loss"]

    result["train_examples_per_s_with_text_loss"] = batch_size / _timeit(text_step, _STEPS.value)
  obs = {k: v for k, v in data.batch(0, 1).items() if k in batch_lib.OBSERVATION_KEYS}
  params = holder["state"].params
  for kv in (True, False):
    sampler = vla_train.make_sampler(model, 10, kv)
    seconds = _timeit(lambda: sampler(params, obs, jax.random.PRNGKey(0)), _SAMPLE_REPS.value)
    tag = "kv_cache" if kv else "no_cache"
    result[f"sample_latency_ms_{tag}"] = seconds * 1e3
    result[f"sample_gflops_{tag}"] = flops_lib.sample_flops(cfg, 10, kv) / 1e9
  result["kv_cache_speedup"] = result["sample_latency_ms_no_cache"] / result["sample_latency_ms_kv_cache"]
  return result


def state_memory(name: str) -> dict:
  """GiB of the train state (params, EMA, Adam moments) per freeze option and compute dtype."""
  mesh = mesh_lib.make_mesh({"data": 1}, devices=jax.devices()[:1])
  optim = _optim(ema_decay=0.99)
  out = {"preset": name}
  for dtype in ("float32", "bfloat16"):
    model = Pi0(vla_config.get_preset(name, dtype=dtype))
    for freeze in vla_train.FREEZE_OPTIONS:
      abstract = jax.eval_shape(train_vla.make_trainer(model, optim, mesh, freeze).init, jax.random.PRNGKey(0))
      gib = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)) / 2 ** 30
      out[f"{dtype}/{freeze}"] = {"params_gib": round(gib(abstract.params), 3),
                                  "state_gib": round(gib(abstract), 3)}
  return out


def main(argv):
  del argv
  dtype = jnp.dtype(_DTYPE.value)
  peak = matmul_peak(_PEAK_SIZE.value, dtype)
  out = {"device": str(jax.devices()[0].device_kind), "platform": jax.devices()[0].platform,
         "num_devices": jax.device_count(), "matmul_peak_gflops": peak / 1e9,
         "peak_matmul_size": _PEAK_SIZE.value, "results": []}
  for name in _PRESETS.value:
    out["results"].append(measure(name, peak))
    print(json.dumps(out["results"][-1]), flush=True)
  out["state_memory"] = [state_memory(name) for name in _MEMORY.value]
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  app.run(main)
