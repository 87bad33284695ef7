"""Writes (and with `--submit`, submits) a SLURM batch script for a multi-node run of an experiment.

  python launch/slurm.py --job_name=ppo_go1 --nodes=2 --gpus_per_node=8 --time=12:00:00 \
      --partition=gpu --setup="source venv/bin/activate" -- \
      -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:quadruped \
      --config.workdir=runs/ppo_go1

  # a job array, one sweep point per array index (same --sweep/--sweep_file forms as sweep.py);
  # point i trains in <root>/<point name>, root defaulting to <output_dir>/<job_name>
  python launch/slurm.py --job_name=sac_seeds --nodes=1 --gpus_per_node=1 \
      --sweep="run.seed=0,1,2" --submit -- \
      -m experiments.sac_control --config=experiments/configs/sac_control.py:cartpole

The script goes to `<output_dir>/<job_name>.sbatch` (its path is printed) and the job's output to
`<output_dir>/<job_name>-<job id>.out`. It changes to `--chdir` (default: the current directory),
runs `--setup`, takes the first host of `scontrol show hostnames "$SLURM_JOB_NODELIST"` as the
coordinator, and starts one task per node with `srun`; each task runs

  python <args> --config.distributed.coordinator_address=$COORD:$PORT \
      --config.distributed.num_processes=$SLURM_NTASKS --config.distributed.process_id=$SLURM_PROCID

so each node is one JAX process that uses all of its GPUs (process 0 writes logs and checkpoints;
the workdir must be on a filesystem all nodes share). PORT is `--port`, by default derived from the
job id so that jobs sharing a node do not collide. `srun --kill-on-bad-exit=1` stops every task when
one fails, instead of leaving the others waiting in a collective. Re-submitting the same script
resumes each run from its workdir's newest checkpoint. `--submit` runs `sbatch` on the script.
"""
import argparse
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

try:
  from launch import sweep  # imported as `launch.slurm` (e.g. by the tests)
except ImportError:
  import sweep  # run as `python launch/slurm.py`


def render(command: list[str], *, job_name: str, nodes: int, gpus_per_node: int, cpus_per_task: int,
           time: str, output_dir: pathlib.Path, chdir: str, partition: str = "", account: str = "",
           setup: str = "", port: int = 0, python: str = "python",
           points: list[sweep.Point] | None = None, header: str = "") -> str:
  """The text of the batch script (`points`: one job array index per sweep point)."""
  output = output_dir / (f"{job_name}-%A_%a.out" if points else f"{job_name}-%j.out")
  directives = {"job-name": job_name, "nodes": nodes, "ntasks-per-node": 1,
                "gpus-per-node": gpus_per_node or None, "cpus-per-task": cpus_per_task,
                "time": time, "partition": partition or None, "account": account or None,
                "output": output, "array": f"0-{len(points) - 1}" if points else None}
  lines = ["#!/bin/bash", f"# Written by launch/slurm.py{': ' + header if header else ''}"]
  lines += [f"#SBATCH --{k}={v}" for k, v in directives.items() if v is not None]
  lines += ["set -euo pipefail", f"cd {shlex.quote(chdir)}"]
  if setup:
    lines.append(setup)
  lines += ['COORD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)',
            f"PORT={port}" if port else "PORT=$((20000 + SLURM_JOB_ID % 20000))"]
  args = [python, *command]
  if points:
    lines.append("# One entry per array index: that sweep point's config overrides and workdir.")
    lines.append("POINTS=(")
    lines += [f"  {shlex.quote(shlex.join(sweep.point_flags(p)))}  # {i}: {p.name}"
              for i, p in enumerate(points)]
    lines.append(")")
    lines.append('eval "FLAGS=(${POINTS[$SLURM_ARRAY_TASK_ID]})"')
    args_text = shlex.join(args) + ' "${FLAGS[@]}"'
  else:
    args_text = shlex.join(args)
  lines += [
      "# One task per node, each one JAX process; its rank and the task count are per-task variables,",
      "# so they are expanded inside the task's shell.",
      "srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c \\",
      "  'exec \"$@\" --config.distributed.num_processes=\"$SLURM_NTASKS\""
      " --config.distributed.process_id=\"$SLURM_PROCID\"' \\",
      f'  _ {args_text} --config.distributed.coordinator_address="$COORD:$PORT"',
  ]
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  options, command = sweep.split_argv(sys.argv[1:] if argv is None else list(argv))
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   usage="%(prog)s [options] -- PYTHON_ARGS")
  parser.add_argument("--job_name", default="vlajax")
  parser.add_argument("--nodes", type=int, default=1)
  parser.add_argument("--gpus_per_node", type=int, default=1, help="0: no GPU request")
  parser.add_argument("--cpus_per_task", type=int, default=8)
  parser.add_argument("--time", default="04:00:00", help="wall-clock limit, SLURM format")
  parser.add_argument("--partition", default="")
  parser.add_argument("--account", default="")
  parser.add_argument("--output_dir", default="runs/slurm", help="batch script and job output")
  parser.add_argument("--setup", default="", help='shell line run first, e.g. "source venv/bin/activate"')
  parser.add_argument("--chdir", default=os.getcwd(), help="directory the job runs in (repo root)")
  parser.add_argument("--port", type=int, default=0, help="coordinator port (0: from the job id)")
  parser.add_argument("--python", default="python", help="interpreter on the nodes")
  parser.add_argument("--root", default=None,
                      help="sweep: parent of the points' workdirs (default <output_dir>/<job_name>)")
  sweep.add_sweep_args(parser)
  parser.add_argument("--submit", action="store_true", help="run sbatch on the written script")
  args = parser.parse_args(options)
  output_dir = pathlib.Path(args.output_dir).absolute()
  points = None
  try:
    if not command:
      raise ValueError("empty command: put the python arguments after `--`")
    if args.nodes < 1:
      raise ValueError("--nodes must be at least 1")
    sweep.check_no_distributed_flags(command)
    if args.sweep or args.sweep_file:
      root = args.root or str(pathlib.Path(args.output_dir) / args.job_name)
      _, points = sweep.parse_sweep_args(args, root)
      sweep.check_command(command, {k for p in points for k in p.overrides})
  except ValueError as e:
    raise SystemExit(f"slurm.py: error: {e}") from None
  text = render(command, job_name=args.job_name, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                cpus_per_task=args.cpus_per_task, time=args.time, output_dir=output_dir,
                chdir=args.chdir, partition=args.partition, account=args.account, setup=args.setup,
                port=args.port, python=args.python, points=points,
                header=shlex.join(["python", "launch/slurm.py", *(argv or sys.argv[1:])]))
  output_dir.mkdir(parents=True, exist_ok=True)
  path = output_dir / f"{args.job_name}.sbatch"
  path.write_text(text)
  print(path)
  if not args.submit:
    return 0
  if shutil.which("sbatch") is None:
    raise SystemExit(f"slurm.py: error: --submit: `sbatch` is not on PATH (run this on a SLURM login "
                     f"node, or submit {path} there with `sbatch {path}`)")
  return subprocess.run(["sbatch", str(path)], check=False).returncode


if __name__ == "__main__":
  sys.exit(main())
