"""Console hygiene for experiment runs: our progress and real warnings on the console, library
chatter in a log file in the run directory.

  logging_setup.setup(config.workdir)   # first thing in an experiment's main()

After `setup(run_dir)` the console shows what the job prints, records at WARNING and above from
any logger, and INFO records logged from vlajax's own code (`vlajax/`, `experiments/`: e.g. the
policy server's request lines). Everything at INFO and above, library INFO included (orbax's
checkpoint lines through absl logging, jax's backend probes, MJX's Warp probe), is appended to
`<run_dir>/<job>.log` (`<job>`: the entry point's module name, e.g. `ppo_locomotion.log`).
absl's flags apply: `--log_dir=DIR` puts the log file in DIR instead; with `--verbosity=N` the
console shows every logger at that level (0: INFO, 1: DEBUG, -1: WARNING).

Import-time probes: MJX imports its optional Warp backend on `import mujoco.mjx` and, when Warp is
missing or fails to load, `print`s "Failed to import warp: ..." to stdout. `capture_import_chatter`
(called by `vlajax/__init__.py` before anything imports MJX) runs that import with stdout captured;
the text goes to the `vlajax.imports` logger at DEBUG and into the run log (INFO) once `setup` is
called.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import io
import logging
import os
import pathlib
import sys

# Modules whose import prints to stdout when an optional backend is missing.
PROBE_MODULES = ("mujoco.mjx.warp",)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"

_log = logging.getLogger("vlajax.imports")
_captured: list[tuple[str, str]] = []   # (module, printed line) of every captured probe
_OUR_DIRS = tuple(str(pathlib.Path(__file__).resolve().parents[i] / name)
                  for i, name in ((1, ""), (2, "experiments")))
_file_handler: logging.Handler | None = None


class _QuietLoader(importlib.abc.Loader):
  """Wraps a module's loader so that what its body prints to stdout is captured and logged."""

  def __init__(self, loader, name: str):
    self._loader = loader
    self._name = name

  def create_module(self, spec):
    return self._loader.create_module(spec)

  def exec_module(self, module):
    out = io.StringIO()
    try:
      with contextlib.redirect_stdout(out):
        self._loader.exec_module(module)
    finally:
      for line in out.getvalue().splitlines():
        if line.strip():
          _captured.append((self._name, line))
          # DEBUG here (an absl app may already have INFO on the console); `setup` writes it
          # into the run log at INFO.
          _log.debug("%s printed on import: %s", self._name, line, extra={"console": False})

  def __getattr__(self, attr):   # get_resource_reader, is_package, ... of the real loader
    return getattr(self._loader, attr)


class _ProbeFinder(importlib.abc.MetaPathFinder):
  """Finds `PROBE_MODULES` through the other finders and wraps their loaders in `_QuietLoader`."""

  def find_spec(self, fullname, path, target=None):
    if fullname not in PROBE_MODULES:
      return None
    for finder in sys.meta_path:
      if finder is self or not hasattr(finder, "find_spec"):
        continue
      spec = finder.find_spec(fullname, path, target)
      if spec is not None:
        if spec.loader is not None:
          spec.loader = _QuietLoader(spec.loader, fullname)
        return spec
    return None


def capture_import_chatter() -> None:
  """Installs the import hook for `PROBE_MODULES` (idempotent; no effect on modules already
  imported)."""
  if not any(isinstance(f, _ProbeFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _ProbeFinder())


def captured_import_chatter() -> list[tuple[str, str]]:
  """`(module, line)` for every line a probe printed on import in this process."""
  return list(_captured)


def _from_our_code(record: logging.LogRecord) -> bool:
  path = os.path.realpath(record.pathname) if record.pathname else ""
  return any(path.startswith(d + os.sep) for d in _OUR_DIRS)


class _ConsoleFilter(logging.Filter):
  """WARNING and above from anyone; INFO from vlajax's own code unless marked `console=False`."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return True
    return record.levelno >= logging.INFO and getattr(record, "console", True) and _from_our_code(record)


def _console_handler() -> logging.Handler:
  """absl's handler on the root logger (what `app.run` installs; installed here otherwise)."""
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  handler = absl_logging.get_absl_handler()
  if handler not in logging.root.handlers:
    absl_logging.use_absl_handler()
  return handler


def _flag_given(name: str):
  """The value of absl flag `name` when given on the command line, else None."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  if flags.FLAGS.is_parsed() and name in flags.FLAGS and flags.FLAGS[name].present:
    return flags.FLAGS[name].value
  return None


def run_dir_of(path: str | pathlib.Path | None) -> pathlib.Path | None:
  """The run directory of an existing run or checkpoint path (`runs/x/checkpoints` -> `runs/x`),
  for jobs that read a run (serving, sim-to-sim); None for None, "" or a path that is not a
  directory (the job reports that itself; no directory is made for a mistyped path)."""
  if not path or not pathlib.Path(path).is_dir():
    return None
  path = pathlib.Path(path)
  return path.parent if path.name == "checkpoints" else path


def setup(run_dir: str | pathlib.Path | None, job: str | None = None,
          process_index: int = 0) -> pathlib.Path | None:
  """Routes an experiment's logging (module docstring); returns the log file (None: no run dir).

  `job` names the file (default: the running script's name); `process_index` > 0 adds
  `.process<i>` so the hosts of a multi-host job sharing a file system keep separate logs.
  Without a run directory (and no `--log_dir`), library INFO is kept off the console and not
  written anywhere.
  Calling it again moves the log file.
  """
  global _file_handler  # pylint: disable=global-statement
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

  console = _console_handler()
  console.filters = [f for f in console.filters if not isinstance(f, _ConsoleFilter)]
  verbosity = _flag_given("verbosity")
  if verbosity is None:   # the console sees the filter's share of INFO
    console.setLevel(logging.NOTSET)
    console.addFilter(_ConsoleFilter())
    console_level = logging.INFO
  else:                   # the console sees what --verbosity asks for, from every logger
    console_level = absl_logging.converter.absl_to_standard(min(verbosity, 1))
    console.setLevel(console_level)
  logging.getLogger("absl").setLevel(logging.NOTSET)   # orbax & co log through it: root decides
  logging.root.setLevel(min(logging.INFO, console_level))   # the file sees library INFO
  if _file_handler is not None:
    logging.root.removeHandler(_file_handler)
    _file_handler.close()
    _file_handler = None
  run_dir = _flag_given("log_dir") or run_dir
  if not run_dir:
    return None
  job = job or pathlib.Path(sys.argv[0]).stem or "run"
  suffix = f".process{process_index}" if process_index else ""
  path = pathlib.Path(run_dir).absolute() / f"{job}{suffix}.log"
  path.parent.mkdir(parents=True, exist_ok=True)
  _file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
  _file_handler.setLevel(logging.INFO)
  _file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
  logging.root.addHandler(_file_handler)
  _file_handler.handle(logging.LogRecord(
      "vlajax", logging.INFO, __file__, 0, "=== %s started: %s", (job, " ".join(sys.argv)), None))
  for module, line in _captured:   # printed before the log file existed
    _file_handler.handle(logging.LogRecord(
        _log.name, logging.INFO, __file__, 0, "%s printed on import: %s", (module, line), None))
  return path
