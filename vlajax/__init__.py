"""vlajax: massively parallel simulated RL and flow-matching VLA training in JAX/Flax."""

__version__ = "0.1.0"
