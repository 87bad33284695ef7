"""Runs an experiment once per point of a parameter sweep (local ablations), resumably.

  python launch/sweep.py --root=runs/sweeps/horizon \
      --sweep="tdmpc.horizon=3,5" --sweep="run.seed=0,1,2" --report=eval/episode_return -- \
      -m experiments.tdmpc_control --config=experiments/configs/tdmpc_control.py:cartpole

  # explicit points instead of a product: a JSON list of {config key: value} dicts
  echo '[{"sac.learning_rate": 1e-3, "run.seed": 0}, {"sac.learning_rate": 3e-4, "run.seed": 0}]' \
      > points.json
  python launch/sweep.py --root=runs/sweeps/lr --sweep_file=points.json --parallel=2 -- \
      -m experiments.sac_control --config=experiments/configs/sac_control.py:cartpole

Everything after `--` is the python command line (run with this interpreter, from the current
directory). Each `--sweep KEY=V1,V2,...` is one axis (KEY is a config path without the `config.`
prefix; values are passed verbatim as flag text, and commas inside brackets or quotes do not split,
so `sac.actor_hidden=(64,64),(256,256)` is two values); the points are the Cartesian product of the
axes in the order given. Each point runs the command with `--config.KEY=VALUE` per key and
`--config.workdir=<root>/<name>`, where the name is built from the keys' last components and the
values (`horizon=5,seed=0`; the full key where two keys share a last component). The point's
stdout and stderr go to `<root>/<name>/launch.log`.

`<root>/sweep.json` records the command, the axes and every point's status (pending, running,
done, failed), return code and wall seconds, updated as points start and finish. Re-running the same
command skips the points recorded as done and reruns the others (the experiments themselves resume
from their newest checkpoint); a different command or set of points into the same root is refused.
The exit status is 1 when any point failed. `--dry_run` prints the commands and changes nothing.
"""
import argparse
import dataclasses
import itertools
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

_KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_STATE_FILE = "sweep.json"


@dataclasses.dataclass
class Point:
  name: str
  overrides: dict[str, str]   # config key (no `config.` prefix) -> flag value text
  workdir: str = ""
  status: str = "pending"     # pending | running | done | failed
  returncode: int | None = None
  wall_s: float | None = None


def split_values(text: str) -> list[str]:
  """Splits `text` at commas outside brackets and quotes: `1,(2,3),'a,b'` -> 3 values."""
  values, depth, quote, current = [], 0, "", ""
  for char in text:
    if quote:
      quote = "" if char == quote else quote
    elif char in "'\"":
      quote = char
    elif char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth == 0:
      values.append(current.strip())
      current = ""
      continue
    current += char
  if depth or quote:
    raise ValueError(f"unbalanced brackets or quotes in {text!r}")
  return values + [current.strip()]


def check_key(key: str) -> str:
  if key.startswith("config."):
    raise ValueError(f"sweep key {key!r}: leave out the 'config.' prefix ({key[len('config.'):]!r})")
  if not _KEY.fullmatch(key):
    raise ValueError(f"sweep key {key!r} is not a dotted config path like 'run.seed'")
  if key == "workdir":
    raise ValueError("'workdir' cannot be swept: every point gets <root>/<point name>")
  return key


def parse_axis(spec: str) -> tuple[str, list[str]]:
  """`"tdmpc.horizon=3,5"` -> `("tdmpc.horizon", ["3", "5"])`."""
  key, sep, text = spec.partition("=")
  if not sep:
    raise ValueError(f"--sweep {spec!r}: expected KEY=V1,V2,...")
  key = check_key(key.strip())
  if not text.strip():
    raise ValueError(f"--sweep {spec!r}: no values for {key!r}")
  values = split_values(text)
  if any(not v for v in values):
    raise ValueError(f"--sweep {spec!r}: empty value in the list")
  if len(set(values)) != len(values):
    raise ValueError(f"--sweep {spec!r}: a value is repeated")
  return key, values


def flag_value(value) -> str:
  """A JSON value as `--config.KEY=` text (ml_collections parses it by the field's type)."""
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, list):
    return repr(tuple(value))
  if isinstance(value, (str, int, float)) or value is None:
    return str(value)
  raise ValueError(f"cannot pass {value!r} as a config flag value")


def load_points_file(path: str | pathlib.Path) -> list[dict[str, str]]:
  """A JSON list of `{config key: value}` dicts -> the points' overrides (values as flag text)."""
  try:
    data = json.loads(pathlib.Path(path).read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"--sweep_file {path}: {e}") from e
  if not isinstance(data, list) or not data or not all(isinstance(p, dict) for p in data):
    raise ValueError(f"--sweep_file {path}: expected a non-empty JSON list of {{key: value}} dicts")
  points = [{check_key(k): flag_value(v) for k, v in p.items()} for p in data]
  for i, p in enumerate(points):
    if not p:
      raise ValueError(f"--sweep_file {path}: point {i} has no overrides")
  return points


def make_points(axes: list[tuple[str, list[str]]] | None = None,
                overrides: list[dict[str, str]] | None = None,
                root: str | pathlib.Path = ".") -> list[Point]:
  """The named points of a product of `axes` or of explicit `overrides`, workdirs under `root`."""
  if (axes is None) == (overrides is None):
    raise ValueError("give the sweep either as --sweep axes or as --sweep_file, not both or neither")
  if axes is not None:
    if not axes:
      raise ValueError("no --sweep axes")
    keys = [k for k, _ in axes]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
      raise ValueError(f"key {repeated[0]!r} appears in more than one --sweep axis")
    overrides = [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in axes))]
  all_keys = list(dict.fromkeys(k for p in overrides for k in p))
  last = [k.rsplit(".", 1)[-1] for k in all_keys]
  labels = {k: (s if last.count(s) == 1 else k) for k, s in zip(all_keys, last)}
  points, seen = [], {}
  for p in overrides:
    name = ",".join(f"{labels[k]}={_UNSAFE.sub('_', v)}" for k, v in p.items())
    if name in seen:
      raise ValueError(f"points {seen[name]} and {p} get the same name {name!r}")
    if len(name) > 200:
      raise ValueError(f"point name too long for a directory ({len(name)} characters): {name!r}")
    seen[name] = p
    points.append(Point(name, dict(p), workdir=str(pathlib.Path(root) / name)))
  return points


def check_command(command: list[str], keys) -> None:
  """Refuses an empty command, or one that sets `config.workdir` or a swept key itself."""
  if not command:
    raise ValueError("empty command: put the python arguments after `--`, e.g. "
                     "-- -m experiments.sac_control --config=experiments/configs/sac_control.py:smoke")
  for arg in command:
    if arg.startswith("-"):
      flag = arg.lstrip("-").split("=", 1)[0]
      if flag == "config.workdir":
        raise ValueError(f"the command sets {arg!r}; the sweep gives every point its own workdir "
                         "(<root>/<point name>), so leave it out")
      if flag.startswith("config.") and flag[len("config."):] in keys:
        raise ValueError(f"the command sets {arg!r}, which the sweep also sets; leave it out")


def check_no_distributed_flags(command: list[str]) -> None:
  """Refuses a command that sets `--config.distributed.*` (cluster launchers set them per process)."""
  distributed = [a for a in command if a.lstrip("-").startswith("config.distributed.")]
  if distributed:
    raise ValueError(f"the command sets {distributed[0]!r}; the launcher sets the distributed flags "
                     "per process, so leave them out")


def point_flags(point: Point) -> list[str]:
  flags = [f"--config.{k}={v}" for k, v in point.overrides.items()]
  return flags + [f"--config.workdir={point.workdir}"]


def last_metrics(path: str | pathlib.Path, keys: list[str]) -> dict[str, float]:
  """The last logged value of each of `keys` in a `metrics.jsonl` (missing files/keys: absent)."""
  found = {}
  try:
    lines = pathlib.Path(path).read_text().splitlines()
  except OSError:
    return found
  for line in lines:
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue  # e.g. a line cut short by a killed run
    if isinstance(record, dict):
      found.update({k: record[k] for k in keys if k in record})
  return found


def report_table(points: list[Point], keys: list[str]) -> str:
  def cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
  rows = [["point", "status", *keys]]
  for p in points:
    metrics = last_metrics(pathlib.Path(p.workdir) / "metrics.jsonl", keys)
    rows.append([p.name, p.status, *(cell(metrics[k]) if k in metrics else "-" for k in keys)])
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


class Sweep:
  """The points of one sweep under `root` and their recorded state (`root/sweep.json`)."""

  def __init__(self, root, command: list[str], points: list[Point], axes=None):
    self.root = pathlib.Path(root)
    self.command = list(command)
    self.points = points
    self.axes = [{"key": k, "values": v} for k, v in axes] if axes is not None else None
    check_command(self.command, {k for p in points for k in p.overrides})
    self._load()

  @property
  def state_path(self) -> pathlib.Path:
    return self.root / _STATE_FILE

  def _load(self) -> None:
    """Takes over the recorded statuses, refusing a root that holds a different sweep."""
    if not self.state_path.exists():
      return
    try:
      old = json.loads(self.state_path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f"{self.state_path} is not valid JSON ({e}); move it away to start "
                       "over") from e
    problems = []
    if old.get("command") != self.command:
      problems.append(f"command {shlex.join(old.get('command') or [])!r}")
    old_points = [(p["name"], p["overrides"]) for p in old.get("points", [])]
    if old_points != [(p.name, p.overrides) for p in self.points]:
      problems.append(f"points {[name for name, _ in old_points]}")
    if problems:
      raise ValueError(f"{self.root} already holds a different sweep ({'; '.join(problems)}); "
                       "use a new --root, or the same command and axes to resume it")
    for point, record in zip(self.points, old["points"]):
      point.status, point.returncode, point.wall_s = (record.get("status", "pending"),
                                                      record.get("returncode"), record.get("wall_s"))

  def save(self) -> None:
    self.root.mkdir(parents=True, exist_ok=True)
    state = {"command": self.command, "axes": self.axes,
             "points": [dataclasses.asdict(p) for p in self.points]}
    tmp = self.state_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, self.state_path)

  def argv(self, point: Point) -> list[str]:
    return [sys.executable, *self.command, *point_flags(point)]

  def run(self, parallel: int = 1, poll_s: float = 0.1, stream=None) -> bool:
    """Runs every point not recorded as done, up to `parallel` at once; True if none failed."""
    stream = stream or sys.stdout
    todo = [p for p in self.points if p.status != "done"]
    for p in self.points:
      if p.status == "done":
        print(f"[skip  ] {p.name}  (done before)", file=stream)
    self.save()
    running = {}  # Popen -> (point, start time, log file)
    try:
      while todo or running:
        while todo and len(running) < max(parallel, 1):
          point = todo.pop(0)
          pathlib.Path(point.workdir).mkdir(parents=True, exist_ok=True)
          log = open(pathlib.Path(point.workdir) / "launch.log", "a", encoding="utf-8")
          log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(self.argv(point))}\n")
          log.flush()
          proc = subprocess.Popen(self.argv(point), stdout=log, stderr=subprocess.STDOUT)
          running[proc] = (point, time.time(), log)
          point.status, point.returncode, point.wall_s = "running", None, None
          self.save()
        for proc in [p for p in running if p.poll() is not None]:
          point, start, log = running.pop(proc)
          log.close()
          point.returncode, point.wall_s = proc.returncode, round(time.time() - start, 2)
          point.status = "done" if proc.returncode == 0 else "failed"
          self.save()
          print(f"[{point.status:<6}] {point.name}  rc={point.returncode}  {point.wall_s:.1f}s  "
                f"log: {pathlib.Path(point.workdir) / 'launch.log'}", file=stream, flush=True)
        if running:
          time.sleep(poll_s)
    finally:  # interrupted: stop what this sweep started and record it as failed
      for proc, (point, start, log) in running.items():
        proc.terminate()
        proc.wait()
        log.close()
        point.status, point.returncode = "failed", proc.returncode
        point.wall_s = round(time.time() - start, 2)
      if running:
        self.save()
    return all(p.status == "done" for p in self.points)


def parse_sweep_args(args, root) -> tuple[list | None, list[Point]]:
  """The axes (or None) and points from parsed `--sweep`/`--sweep_file` arguments."""
  if bool(args.sweep) == bool(args.sweep_file):
    raise ValueError("give the sweep either as --sweep KEY=V1,V2 (one or more) or as "
                     "--sweep_file=FILE.json, not both or neither")
  if args.sweep:
    axes = [parse_axis(s) for s in args.sweep]
    return axes, make_points(axes=axes, root=root)
  return None, make_points(overrides=load_points_file(args.sweep_file), root=root)


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                      help="one sweep axis (repeat for a Cartesian product)")
  parser.add_argument("--sweep_file", default=None,
                      help="JSON list of {config key: value} dicts, one per point")


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
  """Splits at the first `--`: (launcher options, python command)."""
  if "--" not in argv:
    return argv, []
  i = argv.index("--")
  return argv[:i], argv[i + 1:]


def main(argv: list[str] | None = None) -> int:
  options, command = split_argv(sys.argv[1:] if argv is None else list(argv))
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      usage="%(prog)s --root=DIR (--sweep=KEY=V1,V2 ... | --sweep_file=F) [options] -- PYTHON_ARGS")
  parser.add_argument("--root", required=True, help="sweep directory (one workdir per point)")
  add_sweep_args(parser)
  parser.add_argument("--parallel", type=int, default=1, help="points run at once")
  parser.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
  parser.add_argument("--report", default="", help="comma-separated metrics.jsonl keys to tabulate")
  args = parser.parse_args(options)
  try:
    if args.parallel < 1:
      raise ValueError("--parallel must be at least 1")
    axes, points = parse_sweep_args(args, args.root)
    sweep = Sweep(args.root, command, points, axes)
  except ValueError as e:
    raise SystemExit(f"sweep.py: error: {e}") from None
  keys = [k for k in args.report.split(",") if k]
  if args.dry_run:
    for p in points:
      state = "done, would skip" if p.status == "done" else "would run"
      print(f"[{state}] {p.name}: {shlex.join(sweep.argv(p))}")
    return 0
  print(f"sweep of {len(points)} point(s) in {args.root}, "
        f"{sum(p.status != 'done' for p in points)} to run, {args.parallel} at a time", flush=True)
  try:
    ok = sweep.run(parallel=args.parallel)
  except KeyboardInterrupt:
    print("interrupted: running points stopped and recorded as failed (re-run to resume)")
    return 130
  if keys:
    print(report_table(points, keys))
  failed = [p.name for p in points if p.status != "done"]
  if failed:
    print(f"{len(failed)} of {len(points)} point(s) failed: {', '.join(failed)}")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
