#!/usr/bin/env bash
# The accelerator benchmarks of BENCHMARKS.md in one bounded run; each writes <out>/<name>.json
# (stdout) and <out>/<name>.log (stderr), and each has its own time limit so a slow one cannot
# starve the rest; progress lines ("[  65.6s] ours seed 0: ...") go to the .log files.
#   usage: bash benchmarks/gpu_suite.sh OUT_DIR [NAME ...]
# Measured on an H200 (2026-11-26): compilation dominates. ppo_quadruped needs ~450 s (ours: 65 s
# to the first iteration, 30 s evaluation; brax: 77 s to its first evaluation, 72 s per compiling
# epoch, two of them), so with the device tool's 600 s per command run it alone, then the rest:
#   bash benchmarks/gpu_suite.sh $OUT ppo_quadruped
#   bash benchmarks/gpu_suite.sh $OUT ppo_reacher sac tdmpc_latency
# tdmpc_large: TD-MPC2's model size (latent 512, MLP 512, encoder 256) and full planner (6 × 512
# samples, 64 elites, 24 prior plans) on the cart-pole preset's budget, seeds 0-2 each in its own
# process (they share the GPU; sample efficiency does not depend on speed), both at TD-MPC2's
# lr 3e-4 / batch 256 ("tdmpc2") and at the preset's lr 1e-3 / batch 128 ("large"), beside our SAC
# with the same action repeat, update ratio and seed data at brax's τ 0.005 ("sac_matched", seeds
# 0-2, one process). The parts are merged into tdmpc_large.{json,log}.
set -u
out=${1:?usage: gpu_suite.sh OUT_DIR [NAME ...]}; shift
mkdir -p "$out"
declare -A limit cmd
limit[ppo_quadruped]=480
cmd[ppo_quadruped]="benchmarks/ppo_vs_brax.py --envs=quadruped_joystick --num_envs=8192 --minibatches=32 --iterations=12 --brax_epochs=4 --hidden=512,256,128"
limit[ppo_reacher]=220
cmd[ppo_reacher]="benchmarks/ppo_vs_brax.py --envs=reacher --num_envs=4096 --minibatches=32 --iterations=20 --brax_epochs=4 --hidden=256,256"
limit[sac]=260
cmd[sac]="benchmarks/sac_vs_brax.py --envs=cartpole --num_envs=128 --batch_size=512 --grad_updates=8 --steps=200000 --hidden=256,256 --brax_epochs=4 --reset_refresh=-1,50"
limit[tdmpc_latency]=70
cmd[tdmpc_latency]="benchmarks/tdmpc.py --skip_training --latent=512 --mlp=512 --enc=256 --batch_sizes=1,256 --repeats=10"
big="latent_dim=512,mlp_dim=512,enc_dim=256,mppi.num_samples=512,mppi.num_elites=64,mppi.num_prior_samples=24"
declare -A se
se[tdmpc2]="tdmpc:$big,batch_size=256,learning_rate=0.0003"
se[large]="tdmpc:$big"
se[sac_matched]="sac:tau=0.005"   # the preset has the repeat / UTD / seed data; brax's τ
limit[tdmpc_large]=300
tdmpc_large() {  # all processes in parallel; each gets a slice of GPU memory
  local pids=() variant seed
  for variant in tdmpc2 large; do
    for seed in 0 1 2; do
      XLA_PYTHON_CLIENT_MEM_FRACTION=0.12 timeout "${limit[tdmpc_large]}" python3 benchmarks/tdmpc.py \
        --learners="${se[$variant]}" --first_seed=$seed --seeds=1 --batch_sizes=1 --repeats=1 \
        > "$out/tdmpc_large_${variant}_$seed.json" 2> "$out/tdmpc_large_${variant}_$seed.log" &
      pids+=($!)
    done
  done
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.12 timeout "${limit[tdmpc_large]}" python3 benchmarks/tdmpc.py \
    --learners="${se[sac_matched]}" --seeds=3 --batch_sizes=1 --repeats=1 \
    > "$out/tdmpc_large_sac_matched.json" 2> "$out/tdmpc_large_sac_matched.log" &
  pids+=($!)
  local rc=0 pid; for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  # One .json and one .log (the device tool brings back at most 8 files), each part headed by its name.
  local part; for part in "$out"/tdmpc_large_*.log; do
    echo "== $(basename "$part" .log)"; grep -v "import warp\|import mujoco_warp" "$part"
  done > "$out/tdmpc_large.log"
  for part in "$out"/tdmpc_large_*.json; do echo "== $(basename "$part" .json)"; cat "$part"; done \
    > "$out/tdmpc_large.json"
  rm -f "$out"/tdmpc_large_*.log "$out"/tdmpc_large_*.json
  grep "^==\|seed .: {" "$out/tdmpc_large.log"
  return $rc
}
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(ppo_quadruped ppo_reacher sac tdmpc_latency)
status=0
for name in "${names[@]}"; do
  start=$(date +%s)
  if [ "$name" = tdmpc_large ]; then tdmpc_large; rc=$?
  else timeout "${limit[$name]}" python3 ${cmd[$name]} > "$out/$name.json" 2> "$out/$name.log"; rc=$?
  fi; [ $rc -ne 0 ] && status=1
  echo "$name rc=$rc $(( $(date +%s) - start ))s"; [ -f "$out/$name.json" ] && tail -c 600 "$out/$name.json"; echo
done
exit $status
