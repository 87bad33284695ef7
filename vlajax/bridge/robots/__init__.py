"""Robot interface and the native-MuJoCo stand-in robot."""
from vlajax.bridge.robots.base import Robot
from vlajax.bridge.robots.mujoco_robot import (MujocoRobot, PhysicsOverrides, make_arm_robot,
                                               make_quadruped_robot)

__all__ = ["Robot", "MujocoRobot", "PhysicsOverrides", "make_arm_robot", "make_quadruped_robot"]
