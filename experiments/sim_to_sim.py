"""Sim-to-sim: a PPO locomotion policy trained in MJX walks a native-MuJoCo robot through the bridge.

  python -m experiments.sim_to_sim --checkpoint=runs/ppo_cpu
  # 20 episodes of 2 commands drawn from the env's command distribution (seed 0): falls with
  # their Wilson interval, tracking errors with bootstrap intervals
  python -m experiments.sim_to_sim --checkpoint=runs/ppo_cpu --episodes=20 --random_commands
  python -m experiments.sim_to_sim --checkpoint=runs/ppo_cpu --friction_scale=0.5 --kp_scale=0.65 \
      --server_port=8000   # use an already running `experiments.serve_policy`

Physics defaults lie outside the training DR ranges: floor friction 0.35 vs U(0.4, 1.0), link
masses x1.15 vs U(0.9, 1.1), Kp x0.65 vs U(0.7, 1.3), joint damping x1.4 vs U(0.7, 1.3). The
run itself is `vlajax.eval.sim_to_sim`. Prints one JSON line of results; library INFO (orbax's
restore lines) goes to `sim_to_sim.log` in the checkpoint's run directory (or `--log_dir`).
"""
import json

from absl import app, flags

from vlajax.bridge.robots import PhysicsOverrides
from vlajax.core import logging_setup
from vlajax.eval import sim_to_sim

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "PPO run directory (or its checkpoints/).")
_EPISODES = flags.DEFINE_integer("episodes", 1, "Episodes (a fresh robot each).")
_RANDOM = flags.DEFINE_bool("random_commands", False,
                            "Draw each episode's commands from the env's distribution (seeded).")
_PER_EPISODE = flags.DEFINE_integer("commands_per_episode", 2, "With --random_commands.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the command schedules and robot noise.")
_SECONDS = flags.DEFINE_float("seconds_per_command", 4.0, "Seconds each joystick command is held.")
_FRICTION = flags.DEFINE_float("friction_scale", 0.5, "Floor/foot friction x (training: 0.4-1.0).")
_MASS = flags.DEFINE_float("mass_scale", 1.15, "Link masses x (training: 0.9-1.1).")
_KP = flags.DEFINE_float("kp_scale", 0.65, "Actuator Kp x (training: 0.7-1.3).")
_DAMPING = flags.DEFINE_float("damping_scale", 1.4, "Joint damping x (training: 0.7-1.3).")
_DELAY = flags.DEFINE_float("action_delay_s", 0.0, "Extra actuation latency (s).")
_NOISE = flags.DEFINE_float("noise_level", 1.0, "Observation noise (1 = the env's training noise).")
_PORT = flags.DEFINE_integer("server_port", 0, "A running policy server's port (0: in-process).")
_HOST = flags.DEFINE_string("server_host", "127.0.0.1", "Policy server host.")
_TRANSPORT = flags.DEFINE_enum("transport", "websocket", ["websocket", "local"],
                               "websocket: through the policy server; local: in-process reference.")


def main(argv):
  del argv
  logging_setup.setup(logging_setup.run_dir_of(_CHECKPOINT.value))
  overrides = PhysicsOverrides(friction_scale=_FRICTION.value, mass_scale=_MASS.value,
                               kp_scale=_KP.value, damping_scale=_DAMPING.value,
                               action_delay_s=_DELAY.value)
  cfg = sim_to_sim.SimToSimConfig(
      checkpoint=_CHECKPOINT.value, seconds_per_command=_SECONDS.value, overrides=overrides,
      noise_level=_NOISE.value, server_host=_HOST.value, server_port=_PORT.value,
      transport=_TRANSPORT.value, seed=_SEED.value, commands_per_episode=_PER_EPISODE.value,
      commands=None if _RANDOM.value else sim_to_sim.DEFAULT_COMMANDS)
  print(json.dumps(sim_to_sim.run_episodes(cfg, _EPISODES.value)))


if __name__ == "__main__":
  flags.mark_flag_as_required("checkpoint")
  app.run(main)
