"""Configs for `python -m experiments.eval_policy --config=experiments/configs/eval_policy.py:<name>`.

Names (each a default env and policy kind; every key can be overridden):
  ppo        a PPO run directory:  --config.policy.path=runs/ppo_cpu  (env: the run's own)
  chunk      an action head trained on demos (`experiments.train_policy`):
             --config.policy.path=runs/dp_pick  (env and action space: the demos')
  scripted   the scripted expert of a manipulation task:  --config.env_name=arm_pick_cube
  random     uniform random actions (a floor), `arm_reach` by default
  language   the scripted expert on `tabletop_language`'s held-out instructions
             (`split=heldout` in `env_overrides`), with the generalization matrix in the report

`policy.kind`: ppo | sac | tdmpc | scripted | random | vla | chunk (`vlajax.eval.policies`), or remote: a
policy served at `policy.path` = host:port (`experiments.serve_policy`), evaluated through the
bridge (client, executor, safety layer) on the arm task's native-MuJoCo twin in real time
(`vlajax.eval.served`; the report adds the bridge's latency). `env_name` "" means the env the
policy's run was trained in (ppo / sac / tdmpc; remote: the `env_name` its server advertises). Comparison: set `compare.kind` (and
`compare.path`) to evaluate a second policy on the same initial states; the report adds both rates,
Fisher's exact one-sided p-value for A > B and a verdict.
"""
import ml_collections


def _policy(kind: str = "", path: str = "") -> ml_collections.ConfigDict:
  # plan: tdmpc's MPPI; execute (0 = the whole chunk) and prompt (envs without instructions): vla's;
  # execute and ensemble (ACT's temporal ensembling, weights exp(-ensemble * i); 0 = off): chunk's.
  return ml_collections.ConfigDict({"kind": kind, "path": path, "step": -1, "plan": True,
                                    "seed": 0, "execute": 0, "prompt": "", "ensemble": 0.0})


def get_config(name: str = "scripted") -> ml_collections.ConfigDict:
  presets = {"ppo": ("", "ppo"), "chunk": ("", "chunk"), "scripted": ("arm_reach", "scripted"),
             "random": ("arm_reach", "random"), "language": ("tabletop_language", "scripted")}
  if name not in presets:
    raise KeyError(f"unknown eval_policy config '{name}' (have: {', '.join(sorted(presets))})")
  env_name, kind = presets[name]
  config = ml_collections.ConfigDict()
  config.env_name = env_name
  # "key=value,..." overrides of the env's own config (e.g. split=heldout, action_space=joint),
  # applied on top of the run's env config for trained policies; unknown keys are errors.
  config.env_overrides = "action_space=ee_delta" if kind == "scripted" else ""
  if name == "language":
    config.env_overrides += ",split=heldout"
  config.policy = _policy(kind)
  config.compare = _policy()
  config.seed = 0                  # the initial-state set: the same seed, the same states
  config.num_episodes = 50
  config.episode_length = 0        # 0: the env's
  config.batch_size = 64           # episodes per jitted rollout
  # Episodes rendered to mp4 (0: none): the first ones, or for a language env the first of each
  # task (within the first batch).
  config.videos = 2
  config.video_camera = "primary"
  config.video_size = 128
  config.out_dir = "runs/eval"
  # Error if the env has no success metric; the ppo preset (locomotion runs have none) reports
  # mean return, length and the env's metrics (tracking errors) instead.
  config.require_success = name != "ppo"
  return config
