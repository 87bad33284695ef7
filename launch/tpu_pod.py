"""Prints (with `--run`, runs) the `gcloud` command that starts an experiment on all TPU-VM workers.

  python launch/tpu_pod.py --name=my-v4-32 --zone=us-central2-b --repo_dir=vlajax \
      --setup="source venv/bin/activate" -- \
      -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:quadruped \
      --config.workdir=/mnt/shared/runs/ppo_go1

prints (one line; `--coordinator`/`--num_workers` replace the metadata look-ups)

  gcloud compute tpus tpu-vm ssh my-v4-32 --zone=us-central2-b --worker=all --command='cd vlajax \
      && source venv/bin/activate \
      && WORKER_ID=${TPU_WORKER_ID:-$(curl -sf -H Metadata-Flavor:Google $MD/agent-worker-number)} \
      && ENDPOINTS=$(curl -sf -H Metadata-Flavor:Google $MD/worker-network-endpoints) \
      && COORD=${ENDPOINTS%%,*} && COORD=${COORD##*:} \
      && NUM_WORKERS=$(echo "$ENDPOINTS" | tr , "\n" | grep -c .) \
      && python -m experiments.ppo_locomotion ... --config.distributed.coordinator_address=$COORD:8482 \
      --config.distributed.num_processes=$NUM_WORKERS --config.distributed.process_id=$WORKER_ID'

(`$MD` standing for the metadata server's `.../computeMetadata/v1/instance/attributes`, written out).
The code must already be on every worker (e.g. `gcloud compute tpus tpu-vm scp --worker=all` or a
`git clone` run the same way), at `--repo_dir` relative to the remote home directory.

Why explicit flags: the entry points call `jax.distributed.initialize` (through
`vlajax.core.mesh.initialize_distributed`) only when `--config.distributed.num_processes` is above
1, and then always pass `config.distributed.process_id` (default 0) explicitly. So JAX's TPU
auto-detection does not run for a plain command: without the flags every worker would train alone
as a 1-process job, and with only `num_processes` every worker would claim process 0. This launcher
therefore passes all three flags, read on each worker from the TPU VM metadata server the way JAX's
own GCE TPU detection reads them: the process id from `agent-worker-number` (or `$TPU_WORKER_ID`
when set), the worker count and the coordinator (the first worker, the list being ordered by worker
id) from `worker-network-endpoints`; given both `--coordinator=HOST` and `--num_workers=N`, the
endpoint list is not looked up. Process 0 writes logs and checkpoints; the workdir must be a
directory every worker sees (a shared mount; the run directory code does not take `gs://` paths).
`--worker=all` keeps the ssh sessions attached, and closing them normally stops the run (SIGHUP;
wrap the python command in `nohup` or `tmux` yourself for a detached run); re-running the command
resumes from the newest checkpoint.
"""
import argparse
import shlex
import shutil
import subprocess
import sys

try:
  from launch import sweep  # imported as `launch.tpu_pod` (e.g. by the tests)
except ImportError:
  import sweep  # run as `python launch/tpu_pod.py`

_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes"


def remote_command(command: list[str], *, repo_dir: str = "vlajax", setup: str = "", port: int = 8482,
                   coordinator: str = "", num_workers: int = 0, python: str = "python") -> str:
  """The shell command each worker runs: cd, setup, derive the distributed flags, start python."""
  fetch = f"curl -sf -H Metadata-Flavor:Google {_METADATA}"
  steps = [f"cd {shlex.quote(repo_dir)}"] + ([setup] if setup else [])
  steps.append(f"WORKER_ID=${{TPU_WORKER_ID:-$({fetch}/agent-worker-number)}}")
  if not (coordinator and num_workers):
    steps.append(f"ENDPOINTS=$({fetch}/worker-network-endpoints)")
  if coordinator:
    steps.append(f"COORD={shlex.quote(coordinator)}")
  else:  # the first endpoint, `host` or `name:id:ip`: its last `:` field
    steps += ["COORD=${ENDPOINTS%%,*}", "COORD=${COORD##*:}"]
  steps.append(f"NUM_WORKERS={num_workers}" if num_workers else
               'NUM_WORKERS=$(echo "$ENDPOINTS" | tr , "\\n" | grep -c .)')
  steps.append(shlex.join([python, *command]) +
               f" --config.distributed.coordinator_address=$COORD:{port}"
               " --config.distributed.num_processes=$NUM_WORKERS"
               " --config.distributed.process_id=$WORKER_ID")
  return " && ".join(steps)


def gcloud_argv(name: str, zone: str, remote: str, project: str = "") -> list[str]:
  argv = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", name, f"--zone={zone}", "--worker=all"]
  if project:
    argv.append(f"--project={project}")
  return argv + [f"--command={remote}"]


def main(argv: list[str] | None = None) -> int:
  options, command = sweep.split_argv(sys.argv[1:] if argv is None else list(argv))
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   usage="%(prog)s --name=TPU --zone=ZONE [options] -- PYTHON_ARGS")
  parser.add_argument("--name", required=True, help="TPU VM (pod slice) name")
  parser.add_argument("--zone", required=True)
  parser.add_argument("--project", default="")
  parser.add_argument("--repo_dir", default="vlajax", help="the repo on the workers (from $HOME)")
  parser.add_argument("--setup", default="", help='shell step before python, e.g. "source venv/bin/activate"')
  parser.add_argument("--port", type=int, default=8482, help="coordinator port (JAX's TPU default)")
  parser.add_argument("--coordinator", default="", help="worker 0's address (default: from metadata)")
  parser.add_argument("--num_workers", type=int, default=0, help="worker count (default: from metadata)")
  parser.add_argument("--python", default="python", help="interpreter on the workers")
  parser.add_argument("--run", action="store_true", help="run the gcloud command instead of printing it")
  args = parser.parse_args(options)
  if not command:
    raise SystemExit("tpu_pod.py: error: empty command: put the python arguments after `--`")
  try:
    sweep.check_no_distributed_flags(command)
  except ValueError as e:
    raise SystemExit(f"tpu_pod.py: error: {e}") from None
  remote = remote_command(command, repo_dir=args.repo_dir, setup=args.setup, port=args.port,
                          coordinator=args.coordinator, num_workers=args.num_workers,
                          python=args.python)
  gcloud = gcloud_argv(args.name, args.zone, remote, args.project)
  if not args.run:
    print(shlex.join(gcloud[:-1]), f"--command={shlex.quote(remote)}")
    return 0
  if shutil.which("gcloud") is None:
    raise SystemExit("tpu_pod.py: error: --run: `gcloud` is not on PATH")
  return subprocess.run(gcloud, check=False).returncode


if __name__ == "__main__":
  sys.exit(main())
