"""Robot interface and the native-MuJoCo stand-in robots."""
from vlajax.bridge.robots.arm_task_robot import ArmTaskRobot, make_arm_robot
from vlajax.bridge.robots.base import Robot
from vlajax.bridge.robots.mujoco_robot import (MujocoRobot, PhysicsOverrides, make_arm6_robot,
                                               make_quadruped_robot)

__all__ = ["Robot", "MujocoRobot", "ArmTaskRobot", "PhysicsOverrides", "make_arm_robot",
           "make_arm6_robot", "make_quadruped_robot"]
