"""`log(...)`: progress lines on stderr, stamped with seconds since the benchmark started, so a run
cut off by a time limit (the device tool's, or `gpu_suite.sh`'s) still shows how far it got."""
import sys
import time

_START = time.perf_counter()


def log(*parts) -> None:
  print(f"[{time.perf_counter() - _START:7.1f}s]", *parts, file=sys.stderr, flush=True)
