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
set -u
out=${1:?usage: gpu_suite.sh OUT_DIR [NAME ...]}; shift
mkdir -p "$out"
declare -A limit cmd
limit[ppo_quadruped]=480
cmd[ppo_quadruped]="benchmarks/ppo_vs_brax.py --envs=quadruped_joystick --num_envs=8192 --minibatches=32 --iterations=12 --brax_epochs=4 --hidden=512,256,128"
limit[ppo_reacher]=220
cmd[ppo_reacher]="benchmarks/ppo_vs_brax.py --envs=reacher --num_envs=4096 --minibatches=32 --iterations=20 --brax_epochs=4 --hidden=256,256"
limit[sac]=220
cmd[sac]="benchmarks/sac_vs_brax.py --envs=cartpole --num_envs=128 --batch_size=512 --grad_updates=8 --steps=200000 --hidden=256,256 --brax_epochs=4"
limit[tdmpc_latency]=70
cmd[tdmpc_latency]="benchmarks/tdmpc.py --skip_training --latent=512 --mlp=512 --enc=256 --batch_sizes=1,256 --repeats=10"
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(ppo_quadruped ppo_reacher sac tdmpc_latency)
status=0
for name in "${names[@]}"; do
  start=$(date +%s)
  timeout "${limit[$name]}" python3 ${cmd[$name]} > "$out/$name.json" 2> "$out/$name.log"
  rc=$?; [ $rc -ne 0 ] && status=1
  echo "$name rc=$rc $(( $(date +%s) - start ))s"; tail -c 600 "$out/$name.json"; echo
done
exit $status
