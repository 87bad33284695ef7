"""The launchers (`launch/`): local sweeps, SLURM batch scripts and TPU-VM pod commands.

The fast tests drive a stand-in experiment (a small script that reads `--config.*` flags and writes
`config.json`/`metrics.jsonl` into its workdir); the slow one sweeps a real experiment.
"""
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from launch import slurm, sweep, tpu_pod

REPO = pathlib.Path(__file__).resolve().parents[1]

# Reads `--config.KEY=VALUE` flags; in its workdir, writes config.json, appends to runs.txt (a run
# counter) and writes metrics.jsonl; with a `distributed.process_id`, records its argv per process.
# STANDIN_FAIL="key=value" makes the point with that override exit 1; STANDIN_BARRIER=DIR makes each
# point wait (10 s at most) until two points have started, so it only passes when run concurrently.
STAND_IN = textwrap.dedent("""\
    import json, os, pathlib, sys, time
    flags = dict(a[len("--config."):].split("=", 1) for a in sys.argv[1:] if a.startswith("--config."))
    workdir = pathlib.Path(flags["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(flags))
    with open(workdir / "runs.txt", "a") as f:
      f.write("run\\n")
    if "distributed.process_id" in flags:
      (workdir / f"argv_{flags['distributed.process_id']}.json").write_text(json.dumps(sys.argv[1:]))
    barrier = os.environ.get("STANDIN_BARRIER")
    if barrier:
      (pathlib.Path(barrier) / workdir.name).touch()
      deadline = time.time() + 10
      while len(os.listdir(barrier)) < 2:
        if time.time() > deadline:
          sys.exit(3)
        time.sleep(0.02)
    value = float(flags.get("x", 0))
    with open(workdir / "metrics.jsonl", "a") as f:
      f.write(json.dumps({"step": 1, "eval/episode_return": value * 10, "loss": 1.0}) + "\\n")
      f.write("{not json\\n")
      f.write(json.dumps({"step": 2, "loss": 0.25}) + "\\n")
    print("stand-in done", flags)
    key, _, fail_value = os.environ.get("STANDIN_FAIL", "=").partition("=")
    sys.exit(1 if key and flags.get(key) == fail_value else 0)
    """)


@pytest.fixture(name="stand_in")
def _stand_in(tmp_path) -> str:
  path = tmp_path / "stand_in.py"
  path.write_text(STAND_IN)
  return str(path)


def _runs(workdir) -> int:
  path = pathlib.Path(workdir) / "runs.txt"
  return len(path.read_text().splitlines()) if path.exists() else 0


# --- sweep.py: parsing and naming ------------------------------------------------------------------

def test_product_order_and_names():
  axes = [sweep.parse_axis("tdmpc.horizon=3,5"), sweep.parse_axis("run.seed=0,1,2")]
  points = sweep.make_points(axes=axes, root="runs/h")
  assert [p.name for p in points] == [f"horizon={h},seed={s}" for h in (3, 5) for s in (0, 1, 2)]
  assert points[4].overrides == {"tdmpc.horizon": "5", "run.seed": "1"}
  assert points[4].workdir == str(pathlib.Path("runs/h/horizon=5,seed=1"))
  assert sweep.point_flags(points[4]) == ["--config.tdmpc.horizon=5", "--config.run.seed=1",
                                          f"--config.workdir={points[4].workdir}"]


def test_names_use_full_keys_when_last_components_clash_and_are_filesystem_safe():
  axes = [sweep.parse_axis("actor.hidden=(64,64),(8,)"), sweep.parse_axis("critic.hidden=(16, 16)"),
          sweep.parse_axis("run.seed=1")]
  assert axes[0] == ("actor.hidden", ["(64,64)", "(8,)"])
  names = [p.name for p in sweep.make_points(axes=axes)]
  assert names == ["actor.hidden=_64_64_,critic.hidden=_16__16_,seed=1",
                   "actor.hidden=_8__,critic.hidden=_16__16_,seed=1"]
  assert all("/" not in n and " " not in n for n in names)


def test_sweep_file_points(tmp_path):
  path = tmp_path / "points.json"
  path.write_text(json.dumps([{"sac.learning_rate": 1e-3, "run.seed": 0},
                              {"sac.learning_rate": 3e-4, "sac.critic_layer_norm": True},
                              {"sac.actor_hidden": [64, 64]}]))
  points = sweep.make_points(overrides=sweep.load_points_file(path))
  assert [p.overrides for p in points] == [
      {"sac.learning_rate": "0.001", "run.seed": "0"},
      {"sac.learning_rate": "0.0003", "sac.critic_layer_norm": "True"},
      {"sac.actor_hidden": "(64, 64)"}]
  assert points[0].name == "learning_rate=0.001,seed=0"


@pytest.mark.parametrize("spec, message", [
    ("run.seed", "expected KEY=V1,V2"),
    ("run.seed=", "no values"),
    ("run.seed=1,,2", "empty value"),
    ("run.seed=1,1", "repeated"),
    ("config.run.seed=1", "leave out the 'config.' prefix"),
    ("1run=2", "not a dotted config path"),
    ("workdir=a,b", "cannot be swept"),
    ("sac.hidden=(1,2", "unbalanced"),
])
def test_malformed_axis(spec, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    sweep.parse_axis(spec)


@pytest.mark.parametrize("args, message", [
    (["--sweep=run.seed=0,1", "--sweep=run.seed=2"], "appears in more than one --sweep axis"),
    (["--sweep=run.seed"], "expected KEY=V1,V2"),
    ([], "not both or neither"),
    (["--sweep=run.seed=0", "--sweep_file=x.json"], "not both or neither"),
    (["--sweep=run.seed=0", "--parallel=0"], "--parallel must be at least 1"),
])
def test_main_refuses_bad_sweeps(tmp_path, stand_in, args, message):
  with pytest.raises(SystemExit, match=re.escape(message)):
    sweep.main([f"--root={tmp_path / 'sweep'}", *args, "--", stand_in])
  assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("command, message", [
    ([], "empty command"),
    (["-m", "x", "--config.workdir=/tmp/a"], "sets '--config.workdir=/tmp/a'"),
    (["-m", "x", "--config.workdir", "/tmp/a"], "sets '--config.workdir'"),
    (["-m", "x", "--config.run.seed=3"], "which the sweep also sets"),
])
def test_main_refuses_bad_commands(tmp_path, command, message):
  with pytest.raises(SystemExit, match=re.escape(message)):
    sweep.main([f"--root={tmp_path / 'sweep'}", "--sweep=run.seed=0,1", "--", *command])
  assert not (tmp_path / "sweep").exists()


def test_bad_sweep_file(tmp_path, stand_in):
  path = tmp_path / "points.json"
  for text, message in [("{", "points.json"), ('{"run.seed": 1}', "non-empty JSON list"),
                        ("[{}]", "point 0 has no overrides"), ('[{"a": {"b": 1}}]', "cannot pass")]:
    path.write_text(text)
    with pytest.raises(SystemExit, match=re.escape(message)):
      sweep.main([f"--root={tmp_path / 'sweep'}", f"--sweep_file={path}", "--", stand_in])


# --- sweep.py: running ------------------------------------------------------------------------------

def test_sweep_runs_records_and_resumes(tmp_path, stand_in, monkeypatch, capsys):
  root = tmp_path / "sweep"
  argv = [f"--root={root}", "--sweep=x=1,2", "--sweep=run.seed=0,1", "--", stand_in, "--config.y=7"]
  monkeypatch.setenv("STANDIN_FAIL", "x=2")
  assert sweep.main(argv) == 1
  state = json.loads((root / "sweep.json").read_text())
  assert state["command"] == [stand_in, "--config.y=7"]
  assert state["axes"] == [{"key": "x", "values": ["1", "2"]}, {"key": "run.seed", "values": ["0", "1"]}]
  assert [(p["name"], p["status"], p["returncode"]) for p in state["points"]] == [
      ("x=1,seed=0", "done", 0), ("x=1,seed=1", "done", 0),
      ("x=2,seed=0", "failed", 1), ("x=2,seed=1", "failed", 1)]
  point = state["points"][1]
  assert point["overrides"] == {"x": "1", "run.seed": "1"}
  assert point["workdir"] == str(root / "x=1,seed=1") and point["wall_s"] >= 0
  assert json.loads((root / "x=1,seed=1" / "config.json").read_text()) == {
      "y": "7", "x": "1", "run.seed": "1", "workdir": str(root / "x=1,seed=1")}
  assert "stand-in done" in (root / "x=2,seed=0" / "launch.log").read_text()
  out = capsys.readouterr().out
  assert re.search(r"\[failed\] x=2,seed=0  rc=1", out) and "2 of 4 point(s) failed" in out

  monkeypatch.delenv("STANDIN_FAIL")  # resume: done points are skipped, failed ones rerun
  assert sweep.main(argv) == 0
  assert [_runs(root / n) for n in ("x=1,seed=0", "x=1,seed=1", "x=2,seed=0", "x=2,seed=1")] == [1, 1, 2, 2]
  state = json.loads((root / "sweep.json").read_text())
  assert all(p["status"] == "done" and p["returncode"] == 0 for p in state["points"])
  assert "[skip  ] x=1,seed=0" in capsys.readouterr().out
  assert sweep.main(argv) == 0  # all done: nothing runs
  assert _runs(root / "x=2,seed=1") == 2


def test_sweep_refuses_a_different_sweep_in_the_same_root(tmp_path, stand_in):
  root = tmp_path / "sweep"
  assert sweep.main([f"--root={root}", "--sweep=run.seed=0,1", "--", stand_in]) == 0
  before = (root / "sweep.json").read_text()
  with pytest.raises(SystemExit, match="already holds a different sweep.*points"):
    sweep.main([f"--root={root}", "--sweep=run.seed=0,1,2", "--", stand_in])
  with pytest.raises(SystemExit, match="already holds a different sweep.*command"):
    sweep.main([f"--root={root}", "--sweep=run.seed=0,1", "--", stand_in, "--config.z=1"])
  assert (root / "sweep.json").read_text() == before
  assert not (root / "seed=2").exists() and _runs(root / "seed=0") == 1


def test_dry_run_changes_nothing(tmp_path, stand_in, capsys):
  root = tmp_path / "sweep"
  assert sweep.main([f"--root={root}", "--sweep=run.seed=0,1", "--dry_run", "--", stand_in]) == 0
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 2 and out[1].endswith(f"{stand_in} --config.run.seed=1 "
                                           f"--config.workdir={shlex.quote(str(root / 'seed=1'))}")
  assert not root.exists()


def test_parallel_runs_points_concurrently(tmp_path, stand_in, monkeypatch):
  barrier = tmp_path / "barrier"
  barrier.mkdir()
  monkeypatch.setenv("STANDIN_BARRIER", str(barrier))  # a point passes only if the other also runs
  root = tmp_path / "sweep"
  assert sweep.main([f"--root={root}", "--sweep=run.seed=0,1", "--parallel=2", "--", stand_in]) == 0
  state = json.loads((root / "sweep.json").read_text())
  assert [p["status"] for p in state["points"]] == ["done", "done"]
  assert sorted(os.listdir(barrier)) == ["seed=0", "seed=1"]


def test_report_table_reads_last_metrics(tmp_path, stand_in, monkeypatch, capsys):
  root = tmp_path / "sweep"
  monkeypatch.setenv("STANDIN_FAIL", "x=3")
  code = sweep.main([f"--root={root}", "--sweep=x=1,2,3", "--report=eval/episode_return,loss,no/such",
                     "--", stand_in])
  assert code == 1
  (root / "x=2" / "metrics.jsonl").unlink()
  table = sweep.report_table(sweep.make_points(axes=[("x", ["1", "2", "3"])], root=root),
                             ["eval/episode_return", "loss", "no/such"])
  assert table.splitlines()[0].split() == ["point", "status", "eval/episode_return", "loss", "no/such"]
  assert [r.split() for r in table.splitlines()[1:]] == [
      ["x=1", "pending", "10", "0.25", "-"], ["x=2", "pending", "-", "-", "-"],
      ["x=3", "pending", "30", "0.25", "-"]]
  out = capsys.readouterr().out
  assert re.search(r"x=3\s+failed\s+30\s+0.25\s+-", out)  # the table main printed


# --- slurm.py ---------------------------------------------------------------------------------------

def _fake_bin(tmp_path, scripts: dict[str, str]) -> pathlib.Path:
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  for name, text in scripts.items():
    (bin_dir / name).write_text("#!/bin/bash\n" + text)
    (bin_dir / name).chmod(0o755)
  return bin_dir


def test_slurm_script_for_one_multinode_run(tmp_path, capsys):
  out_dir = tmp_path / "slurm"
  assert slurm.main(["--job_name=ppo", "--nodes=4", "--gpus_per_node=8", "--partition=gpu",
                     "--account=rl", "--port=1234", f"--output_dir={out_dir}",
                     "--setup=source venv/bin/activate", "--", "-m", "experiments.ppo_locomotion",
                     "--config=experiments/configs/ppo_locomotion.py:quadruped"]) == 0
  path = out_dir / "ppo.sbatch"
  assert capsys.readouterr().out.strip() == str(path)
  text = path.read_text()
  for line in ["#SBATCH --job-name=ppo", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
               "#SBATCH --gpus-per-node=8", "#SBATCH --partition=gpu", "#SBATCH --account=rl",
               f"#SBATCH --output={out_dir}/ppo-%j.out", "source venv/bin/activate",
               'COORD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)', "PORT=1234"]:
    assert line in text.splitlines()
  assert "--array" not in text and "POINTS" not in text
  srun = text[text.index("srun "):]
  assert srun.startswith("srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c")
  assert ('python -m experiments.ppo_locomotion --config=experiments/configs/ppo_locomotion.py:quadruped'
          ' --config.distributed.coordinator_address="$COORD:$PORT"') in srun
  assert '--config.distributed.num_processes="$SLURM_NTASKS"' in srun
  assert '--config.distributed.process_id="$SLURM_PROCID"' in srun
  assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0


def test_slurm_job_array_runs_the_indexed_point(tmp_path, stand_in, capsys):
  out_dir = tmp_path / "slurm"
  root = tmp_path / "runs"
  assert slurm.main(["--job_name=hz", "--nodes=2", "--gpus_per_node=0", f"--output_dir={out_dir}",
                     f"--root={root}", f"--chdir={tmp_path}", f"--python={sys.executable}",
                     "--sweep=tdmpc.horizon=3,5", "--sweep=run.seed=0,1,2", "--sweep=m.hidden=(4, 4)",
                     "--", stand_in,
                     "--config.y=(1, 2)"]) == 0
  path = pathlib.Path(capsys.readouterr().out.strip())
  text = path.read_text()
  assert "#SBATCH --array=0-5" in text and "--gpus-per-node" not in text
  entries = text[text.index("POINTS=(\n"):].split("\n)\n")[0].splitlines()[1:]
  assert len(entries) == 6 and entries[4].endswith("# 4: horizon=5,seed=1,hidden=_4__4_")
  assert f"#SBATCH --output={out_dir}/hz-%A_%a.out" in text
  assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0

  # Run the script with stand-ins for scontrol and srun (2 tasks), as array index 4.
  bin_dir = _fake_bin(tmp_path, {
      "scontrol": 'echo node-a; echo node-b\n',
      "srun": 'while [[ $1 == --* ]]; do shift; done\n'
              'for i in 0 1; do SLURM_PROCID=$i SLURM_NTASKS=2 "$@" || exit $?; done\n'})
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_NODELIST="node-[a-b]",
             SLURM_JOB_ID="20017", SLURM_ARRAY_TASK_ID="4")
  result = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  workdir = root / "horizon=5,seed=1,hidden=_4__4_"
  for pid in (0, 1):
    args = json.loads((workdir / f"argv_{pid}.json").read_text())
    assert args == ["--config.y=(1, 2)", "--config.tdmpc.horizon=5", "--config.run.seed=1",
                    "--config.m.hidden=(4, 4)", f"--config.workdir={workdir}",
                    "--config.distributed.coordinator_address=node-a:20017",  # 20000 + 20017 % 20000
                    "--config.distributed.num_processes=2", f"--config.distributed.process_id={pid}"]
  assert [p.name for p in root.iterdir()] == [workdir.name]


def test_slurm_refusals(tmp_path):
  base = [f"--output_dir={tmp_path}"]
  with pytest.raises(SystemExit, match="empty command"):
    slurm.main(base)
  with pytest.raises(SystemExit, match="workdir"):
    slurm.main([*base, "--sweep=run.seed=0,1", "--", "-m", "x", "--config.workdir=a"])
  with pytest.raises(SystemExit, match="distributed flags"):
    slurm.main([*base, "--", "-m", "x", "--config.distributed.process_id=0"])
  with pytest.raises(SystemExit, match="no values"):
    slurm.main([*base, "--sweep=run.seed=", "--", "-m", "x"])
  assert not list(tmp_path.glob("*.sbatch"))


def test_slurm_submit(tmp_path, monkeypatch, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv("PATH", str(empty))
  with pytest.raises(SystemExit, match="`sbatch` is not on PATH"):
    slurm.main([f"--output_dir={tmp_path}", "--submit", "--", "-m", "x"])
  assert (tmp_path / "vlajax.sbatch").exists()  # written before submitting
  bin_dir = _fake_bin(tmp_path, {"sbatch": f'echo "$@" > {tmp_path}/submitted\necho Submitted 7\n'})
  monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
  capsys.readouterr()
  assert slurm.main([f"--output_dir={tmp_path}", "--submit", "--", "-m", "x"]) == 0
  assert (tmp_path / "submitted").read_text().strip() == str(tmp_path / "vlajax.sbatch")


# --- tpu_pod.py -------------------------------------------------------------------------------------

def test_tpu_pod_prints_the_gcloud_command(capsys):
  assert tpu_pod.main(["--name=pod", "--zone=us-central2-b", "--project=p", "--repo_dir=code/vlajax",
                       "--setup=source venv/bin/activate", "--", "-m", "experiments.sac_control",
                       "--config=experiments/configs/sac_control.py:smoke"]) == 0
  argv = shlex.split(capsys.readouterr().out)
  assert argv[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=us-central2-b",
                      "--worker=all"]
  assert argv[8] == "--project=p" and len(argv) == 10
  remote = argv[9].removeprefix("--command=")
  assert remote.startswith("cd code/vlajax && source venv/bin/activate && WORKER_ID=")
  assert "agent-worker-number" in remote and "worker-network-endpoints" in remote
  assert remote.endswith("python -m experiments.sac_control --config=experiments/configs/sac_control.py:smoke"
                         " --config.distributed.coordinator_address=$COORD:8482"
                         " --config.distributed.num_processes=$NUM_WORKERS"
                         " --config.distributed.process_id=$WORKER_ID")
  assert subprocess.run(["bash", "-n", "-c", remote], check=False).returncode == 0
  with pytest.raises(SystemExit, match="distributed flags"):
    tpu_pod.main(["--name=pod", "--zone=z", "--", "-m", "x", "--config.distributed.num_processes=2"])


@pytest.mark.parametrize("endpoints, coordinator", [
    ("w-0:0:10.1.2.3,w-1:1:10.1.2.4,w-2:2:10.1.2.5", "10.1.2.3"),  # name:id:ip
    ("t1v-n-0,t1v-n-1,t1v-n-2", "t1v-n-0"),                         # host names
])
def test_tpu_pod_remote_command_derives_flags_on_the_worker(tmp_path, stand_in, endpoints, coordinator):
  # A stand-in for the metadata server's curl: worker 1 of 3.
  bin_dir = _fake_bin(tmp_path, {"curl": f'case "${{@: -1}}" in\n'
                                         f'  */agent-worker-number) echo 1;;\n'
                                         f'  */worker-network-endpoints) echo "{endpoints}";;\n'
                                         f'  *) exit 22;;\nesac\n'})
  workdir = tmp_path / "run"
  remote = tpu_pod.remote_command([stand_in, f"--config.workdir={workdir}"], repo_dir=str(tmp_path),
                                  python=sys.executable, port=9000)
  env = {k: v for k, v in os.environ.items() if k != "TPU_WORKER_ID"}
  env["PATH"] = f"{bin_dir}:{env['PATH']}"
  result = subprocess.run(["bash", "-c", remote], env=env, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert json.loads((workdir / "argv_1.json").read_text())[-3:] == [
      f"--config.distributed.coordinator_address={coordinator}:9000",
      "--config.distributed.num_processes=3", "--config.distributed.process_id=1"]


def test_tpu_pod_explicit_flags_and_run(tmp_path, stand_in, monkeypatch, capsys):
  workdir = tmp_path / "run"
  remote = tpu_pod.remote_command([stand_in, f"--config.workdir={workdir}"], repo_dir=str(tmp_path),
                                  python=sys.executable, coordinator="10.0.0.2", num_workers=4)
  assert "worker-network-endpoints" not in remote
  env = dict(os.environ, TPU_WORKER_ID="3", PATH="/usr/bin:/bin")  # no metadata look-up needed
  result = subprocess.run(["bash", "-c", remote], env=env, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert json.loads((workdir / "argv_3.json").read_text())[-3:] == [
      "--config.distributed.coordinator_address=10.0.0.2:8482",
      "--config.distributed.num_processes=4", "--config.distributed.process_id=3"]

  args = ["--name=pod", "--zone=z", "--run", "--", "-m", "x"]
  monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
  with pytest.raises(SystemExit, match="`gcloud` is not on PATH"):
    tpu_pod.main(args)
  bin_dir = _fake_bin(tmp_path, {"gcloud": f'printf "%s\\n" "$@" > {tmp_path}/gcloud_args\n'})
  monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
  assert tpu_pod.main(args) == 0
  called = (tmp_path / "gcloud_args").read_text().splitlines()
  assert called[:7] == ["compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=z", "--worker=all"]
  assert called[7].startswith("--command=cd vlajax && WORKER_ID=") and called[7].endswith(
      "--config.distributed.process_id=$WORKER_ID")


# --- a real sweep -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_sac_sweep(tmp_path):
  root = tmp_path / "sweep"
  result = subprocess.run(
      [sys.executable, "launch/sweep.py", f"--root={root}", "--sweep=run.seed=0,1",
       "--report=eval/episode_return", "--", "-m", "experiments.sac_control",
       "--config=experiments/configs/sac_control.py:smoke"],
      cwd=REPO, capture_output=True, text=True, check=False, timeout=900)
  assert result.returncode == 0, result.stdout + result.stderr
  state = json.loads((root / "sweep.json").read_text())
  assert [(p["name"], p["status"]) for p in state["points"]] == [("seed=0", "done"), ("seed=1", "done")]
  returns = []
  for name in ("seed=0", "seed=1"):
    workdir = root / name
    config = json.loads((workdir / "config.json").read_text())
    assert config["run"]["seed"] == int(name[-1]) and config["workdir"] == str(workdir)
    assert sweep.last_metrics(workdir / "metrics.jsonl", ["step"])["step"] > 0
    assert [p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    returns.append(sweep.last_metrics(workdir / "metrics.jsonl", ["eval/episode_return"]))
  assert all("eval/episode_return" in r for r in returns)
  assert re.search(r"seed=1\s+done\s+\S+", result.stdout)
