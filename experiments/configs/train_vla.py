"""Configs for `python -m experiments.train_vla --config=experiments/configs/train_vla.py:<name>`.

Names:
  smoke   tiny model on the synthetic dataset, a few steps (tests, CI).
  tiny    tiny model on 1024 synthetic examples, 1000 steps (~1 min on a laptop CPU); held-out
          sampled-chunk error falls from ~0.6 to ~0.15.
  small   SmolVLA-scale (~0.4B) model; synthetic data unless `data.source=rlds`.
  pi0     PaliGemma-2B + 300M expert (~3.3B) with openpi's fine-tuning recipe (AdamW 0.9/0.95,
          warmup 1k to 2.5e-5, cosine to 2.5e-6 over 30k, clip 1, EMA 0.99, batch 32, bf16).

`optim` (every preset starts from openpi's recipe) is `vlajax.imitation.train.OptimConfig`'s fields:
the VLA trains with the imitation trainer and loop, whose EMA decay warms up as
`min(ema_decay, (1 + t) / (10 + t))`.

Data: `data.source=synthetic` (a learnable synthetic dataset) or `rlds` (the `vlajax.data`
pipeline: set `data.rlds.data_root` and `data.rlds.weights.<name>`, and `model.tokenizer` to a local
tokenizer directory, or leave it empty for the byte-level fallback). Weights: `model.hf_checkpoint`
points at a local PaliGemma directory (safetensors + config.json). Model fields left at -1 keep the
preset's value. Co-training: `model.text_loss_weight > 0` adds next-token cross-entropy on text targets
(RLDS: the vision-language rows' answers, with `data.rlds.vl_data_dir` / `vl_ratio`; synthetic:
`data.text_targets=True`).
"""
import ml_collections

from vlajax.core import metrics
from vlajax.data import config as data_config


def _base(preset: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.workdir = f"runs/vla_{preset}"
  c.model = ml_collections.ConfigDict(dict(
      preset=preset, dtype="float32", remat=False, freeze="none",   # none | vision | vision_llm
      hf_checkpoint="", tokenizer="",
      text_loss_weight=0.0,   # co-training next-token loss on text targets (VQA answers, synthetic continuations)
      action_dim=-1, action_horizon=-1, state_dim=-1, max_token_len=-1, num_cameras=-1))
  c.optim = ml_collections.ConfigDict(dict(
      peak_lr=2.5e-5, end_lr=2.5e-6, warmup_steps=1000, decay_steps=30_000, b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=1e-10, grad_clip=1.0, ema_decay=0.99, grad_accum=1))   # ema_decay 0 = off
  c.run = metrics.logger_config()   # run.loggers: jsonl,tensorboard (default), wandb
  c.train = ml_collections.ConfigDict(dict(
      steps=30_000, batch_size=32, seed=0, log_every=50, eval_every=1000, eval_batch_size=32,
      sample_steps=10, checkpoint_every=1000, keep_checkpoints=3, resume=True))
  # num_devices -1 = every device (all hosts); N = the first N (single-host experiments).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, min_shard_size=2 ** 14, num_devices=-1))
  c.distributed = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=1, process_id=0))
  c.data = ml_collections.ConfigDict(dict(
      source="synthetic",          # synthetic | rlds
      control_hz=0.0,              # control rate of the training robot(s), recorded for serving (0 = unknown)
      num_train=256, num_eval=64, pad_action_dims=0,   # synthetic only
      text_targets=False,                                  # synthetic: instruction continuations as text targets
      rlds=data_config.default_config()))
  return c


def _smoke() -> ml_collections.ConfigDict:
  c = _base("tiny")
  c.optim.update(dict(peak_lr=1e-2, end_lr=1e-4, warmup_steps=20, decay_steps=500, weight_decay=0.0,
                      ema_decay=0.9))
  c.train.update(dict(steps=4, batch_size=8, log_every=1, eval_every=4, eval_batch_size=8,
                      checkpoint_every=2))
  c.mesh.min_shard_size = 256
  c.data.update(dict(num_train=16, num_eval=8))
  return c


def _tiny() -> ml_collections.ConfigDict:
  # 1000 steps on 1024 synthetic examples: held-out sampled-chunk MAE ~0.15 (targets |a| ~0.6).
  c = _base("tiny")
  c.optim.update(dict(peak_lr=1e-2, end_lr=1e-4, warmup_steps=20, decay_steps=1000, weight_decay=0.0, ema_decay=0.0))
  c.train.update(dict(steps=1000, batch_size=16, log_every=50, eval_every=500, eval_batch_size=64,
                      checkpoint_every=500))
  c.mesh.min_shard_size = 256
  c.data.update(dict(num_train=1024, num_eval=64))
  return c


def _small() -> ml_collections.ConfigDict:
  c = _base("small")
  c.optim.update(dict(peak_lr=1e-4, end_lr=1e-5, warmup_steps=500))
  c.train.update(dict(batch_size=32))
  return c


def _pi0() -> ml_collections.ConfigDict:
  c = _base("pi0")
  c.model.dtype = "bfloat16"
  c.model.remat = True
  c.mesh.fsdp = -1
  c.mesh.data = 1
  return c


def get_config(name: str = "tiny") -> ml_collections.ConfigDict:
  presets = {"smoke": _smoke, "tiny": _tiny, "small": _small, "pi0": _pi0}
  if name not in presets:
    raise KeyError(f"unknown train_vla config '{name}' (have: {', '.join(sorted(presets))})")
  config = presets[name]()
  config.workdir = f"runs/vla_{name}"
  return config
