"""The robot interface the bridge drives: a real arm's driver or the MuJoCo stand-in implement it.

Conventions: `get_observation()` returns the robot's current observation dict (the same keys and
shapes as `observation_spec`); `send_action(a)` sets the command ``float[action_dim]`` that the
robot tracks until the next one arrives; `stop()` is a controlled stop (hold the current joint
positions, no further motion); `reset()` returns the robot to its start state.
"""
from __future__ import annotations

import abc

import numpy as np

from vlajax.bridge.protocol import ArraySpec


class Robot(abc.ABC):
  """Abstract robot. `control_hz` is the rate the executor should command it at."""

  observation_spec: dict
  action_spec: ArraySpec
  control_hz: float

  @abc.abstractmethod
  def get_observation(self) -> dict:
    """Current observation, matching `observation_spec`."""

  @abc.abstractmethod
  def send_action(self, action: np.ndarray) -> None:
    """Command ``float[action_dim]``; held until the next call."""

  @abc.abstractmethod
  def reset(self) -> dict:
    """Back to the start state; returns the first observation."""

  @abc.abstractmethod
  def stop(self) -> None:
    """Controlled stop: hold position; further `send_action` calls are ignored until `reset`."""

  def joint_positions(self) -> np.ndarray | None:
    """Measured joint positions ``float[n]`` (for the safety layer), if the robot reports them."""
    return None

  def wrench(self) -> np.ndarray | None:
    """Measured wrist force/torque ``float[6]``, if the robot has a sensor."""
    return None

  def close(self) -> None:
    """Releases resources (threads, connections)."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
