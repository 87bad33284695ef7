"""vlajax: massively parallel simulated RL and flow-matching VLA training in JAX/Flax."""
from vlajax.core import cpu_fusion
from vlajax.core import cpu_linalg
from vlajax.core import logging_setup

# Before MJX's first import (cpu_fusion.install): its Warp probe prints to stdout when Warp is
# missing; the text goes to the `vlajax.imports` logger and a run's log file instead (core/logging_setup.py).
logging_setup.capture_import_chatter()
# Before anything is lowered: batched LAPACK on the CPU deadlocks jaxlib 0.10 (core/cpu_linalg.py).
cpu_linalg.install()
# MJX's body-tree scans: XLA's CPU fusion blows up on long kinematic chains (core/cpu_fusion.py).
cpu_fusion.install()

__version__ = "0.1.0"
