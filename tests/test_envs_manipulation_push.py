"""`arm_push_cube` closed loop with its scripted expert: jit + vmap rollout over fixed seeded initial
states, finite values, success latched per episode, the expert's success count."""
import manipulation_testlib as lib


def test_push_rollout_with_expert():
  lib.check_rollout("arm_push_cube", *lib.rollout("arm_push_cube"))
