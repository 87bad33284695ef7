"""Configs for `python -m experiments.train_policy --config=experiments/configs/train_policy.py:<head>`.

Names: the action head (`vlajax.policies.heads`): regression | act | diffusion | flow, each with
seed 001's defaults scaled to a CPU (chunk 16 for diffusion / flow / regression, 16 for ACT too,
executing 8; 64 px cameras). Set `data.dataset_dir` to a demo dataset (`experiments.collect_demos`):

  python -m experiments.collect_demos --config=experiments/configs/collect_demos.py:arm_pick_cube
  python -m experiments.train_policy --config=experiments/configs/train_policy.py:diffusion \
      --config.data.dataset_dir=runs/demos/sim_arm_pick_cube/0.1.0 --config.workdir=runs/dp_pick
  python -m experiments.eval_policy --config=experiments/configs/eval_policy.py:chunk \
      --config.policy.path=runs/dp_pick
"""
import ml_collections

from vlajax.core import metrics

HEADS = {  # kind: (action_horizon, window, head fields)
    "regression": (16, 1, {"loss": "l1"}),
    "act": (16, 1, {"kl_weight": 10.0}),
    "diffusion": (16, 2, {}),
    "flow": (16, 1, {}),
    "smoke": (4, 1, {"loss": "l1"}),    # regression, tiny: CI
}


def get_config(name: str = "diffusion") -> ml_collections.ConfigDict:
  if name not in HEADS:
    raise KeyError(f"unknown train_policy config '{name}' (have: {', '.join(sorted(HEADS))})")
  horizon, window, fields = HEADS[name]
  smoke = name == "smoke"
  config = ml_collections.ConfigDict()
  config.workdir = f"runs/policy_{name}"
  config.data = ml_collections.ConfigDict({
      "dataset_dir": "",            # a demo dataset's version directory (demo_info.json)
      "image_size": 32 if smoke else 64,
      "normalization": "normal",
      "augment": False,             # tf-side crop / colour jitter; the heads shift images
      "val_split": "val",           # "" : no held-out loss
      "episodes_per_window": 2 if smoke else 4,
      "windows_per_block": 4 if smoke else 16,
      "num_parallel_calls": 2,
      "on_corrupt": "raise",        # "skip": train without unreadable records (vlajax.data.corruption)
  })
  config.model = ml_collections.ConfigDict({
      "kind": "regression" if smoke else name,
      "action_horizon": horizon,
      "window": window,
      "cameras": "primary,wrist",
      "proprio": True,
      # "proprio": the 18 joint / gripper / tool-point entries (an image policy); "state": the
      # whole obs["state"] of the demos (privileged task information: a state policy, e.g. to
      # check the pipeline without pixels).
      "proprio_source": "proprio",
      # Random-shift augmentation (+-4 px) for the heads that have it (not flow).
      "fields": ml_collections.ConfigDict(
          dict(fields, **({} if name == "flow" else {"augment": not smoke}))),
  })
  config.optim = ml_collections.ConfigDict({
      "peak_lr": 1e-3 if smoke else 3e-4, "end_lr": 1e-5, "warmup_steps": 10 if smoke else 200,
      "decay_steps": 20 if smoke else 10_000, "b1": 0.9, "b2": 0.95, "eps": 1e-8,
      "weight_decay": 0.05, "grad_clip": 1.0, "ema_decay": 0.0 if smoke else 0.999,
      "grad_accum": 1,
  })
  config.run = metrics.logger_config()   # run.loggers: jsonl,tensorboard (default), wandb
  config.train = ml_collections.ConfigDict({
      "steps": 20 if smoke else 10_000, "batch_size": 8 if smoke else 64, "seed": 0,
      "log_every": 5 if smoke else 100, "eval_every": 10 if smoke else 1000,
      "checkpoint_every": 10 if smoke else 1000, "keep_checkpoints": 2, "resume": True,
  })
  config.execute = horizon // 2 if not smoke else horizon   # actions run per chunk in eval
  return config
