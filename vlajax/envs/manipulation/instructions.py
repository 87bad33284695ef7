"""The instruction table of `tabletop_language`: families, phrasings and the held-out split.

An instruction is a *task* (family, object, goal) said in one *phrasing* (a template of its family):

  family  goal                                      phrasings (the last one is held out)
  pick    -                                         "pick up the {object} cube",
                                                    "lift the {object} cube",
                                                    "raise the {object} block"
  place   a plate: white, purple                    "put the {object} cube on the {goal} plate",
                                                    "place the {object} cube onto the {goal} plate",
                                                    "move the {object} block onto the {goal} plate"
  push    a direction (robot frame, seen from       "push the {object} cube to the {goal}",
          behind the arm): left (+y), right (-y),   "slide the {object} cube to the {goal}",
          forward (+x, away), back (-x, toward it)  "nudge the {object} block to the {goal}"

with objects red, green, blue, yellow: 4 + 8 + 16 = 28 tasks x 3 phrasings = 84 instructions.
`HELD_OUT_TASKS` (6 tasks: one object per family never seen with a goal, or never picked) and the
last phrasing of each family are held out of training. Splits (`instruction_ids(split)`):

  "train"             seen tasks, seen phrasings (44 instructions)
  "heldout_tasks"     held-out tasks, seen phrasings (12): new (object, goal) combinations
  "heldout_phrasings" seen tasks, held-out phrasings (22): new wording
  "heldout"           every instruction not in "train" (40: the two above and held-out tasks said
                      in held-out phrasings)
  "all"               all 84

Instruction ids index `INSTRUCTIONS` (fixed order: family, object, goal, phrasing), the env keeps
the id in `state.info["instruction"]`, and `text(id)` gives the words.
"""
from __future__ import annotations

import dataclasses

import numpy as np

OBJECTS = ("red", "green", "blue", "yellow")
PLATES = ("white", "purple")
DIRECTIONS = ("left", "right", "forward", "back")
# Unit vectors of DIRECTIONS in the table plane (world frame; the arm faces +x).
DIRECTION_VECTORS = np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0]], np.float32)
FAMILIES = ("pick", "place", "push")
GOALS = {"pick": ("",), "place": PLATES, "push": DIRECTIONS}
PHRASINGS = {
    "pick": ("pick up the {object} cube", "lift the {object} cube", "raise the {object} block"),
    "place": ("put the {object} cube on the {goal} plate",
              "place the {object} cube onto the {goal} plate",
              "move the {object} block onto the {goal} plate"),
    "push": ("push the {object} cube to the {goal}", "slide the {object} cube to the {goal}",
             "nudge the {object} block to the {goal}"),
}
HELD_OUT_PHRASING = -1   # index into each family's phrasings
HELD_OUT_TASKS = (("pick", "yellow", ""), ("place", "blue", "purple"), ("place", "yellow", "white"),
                  ("push", "green", "left"), ("push", "red", "back"), ("push", "yellow", "forward"))
SPLITS = ("train", "heldout_tasks", "heldout_phrasings", "heldout", "all")


@dataclasses.dataclass(frozen=True)
class Instruction:
  family: str
  object: str
  goal: str        # a plate, a direction, or "" for pick
  phrasing: int    # index into PHRASINGS[family]

  @property
  def text(self) -> str:
    return PHRASINGS[self.family][self.phrasing].format(object=self.object, goal=self.goal)

  @property
  def held_out_task(self) -> bool:
    return (self.family, self.object, self.goal) in HELD_OUT_TASKS

  @property
  def held_out_phrasing(self) -> bool:
    return self.phrasing == len(PHRASINGS[self.family]) + HELD_OUT_PHRASING


INSTRUCTIONS = tuple(
    Instruction(family, obj, goal, phrasing)
    for family in FAMILIES for obj in OBJECTS for goal in GOALS[family]
    for phrasing in range(len(PHRASINGS[family])))


def text(instruction_id) -> str:
  """The words of instruction `instruction_id` (an int or an integer array scalar)."""
  index = int(instruction_id)
  if not 0 <= index < len(INSTRUCTIONS):
    raise IndexError(f"instruction id {index} out of range (0..{len(INSTRUCTIONS) - 1})")
  return INSTRUCTIONS[index].text


def instruction_ids(split: str = "train", families: tuple[str, ...] = FAMILIES) -> np.ndarray:
  """i32[n]: ids of the instructions of `split` (see the module docstring) in `families`."""
  if split not in SPLITS:
    raise ValueError(f"unknown instruction split '{split}' (have: {', '.join(SPLITS)})")
  unknown = [f for f in families if f not in FAMILIES]
  if unknown:
    raise ValueError(f"unknown instruction family {unknown} (have: {', '.join(FAMILIES)})")
  if not families:
    raise ValueError("no instruction families selected")

  def keep(ins: Instruction) -> bool:
    seen = not ins.held_out_task and not ins.held_out_phrasing
    return {"train": seen,
            "heldout_tasks": ins.held_out_task and not ins.held_out_phrasing,
            "heldout_phrasings": ins.held_out_phrasing and not ins.held_out_task,
            "heldout": not seen,
            "all": True}[split]
  return np.array([i for i, ins in enumerate(INSTRUCTIONS) if ins.family in families and keep(ins)],
                  np.int32)


def encoding_table() -> np.ndarray:
  """f32[len(INSTRUCTIONS), 3 + 4 + 6]: per instruction the one-hot family, object, and goal
  (plates, then directions; all zero for pick). The phrasing is not encoded: a state policy sees
  the task, a language policy reads `text`."""
  goals = PLATES + DIRECTIONS
  table = np.zeros((len(INSTRUCTIONS), len(FAMILIES) + len(OBJECTS) + len(goals)), np.float32)
  for i, ins in enumerate(INSTRUCTIONS):
    table[i, FAMILIES.index(ins.family)] = 1.0
    table[i, len(FAMILIES) + OBJECTS.index(ins.object)] = 1.0
    if ins.goal:
      table[i, len(FAMILIES) + len(OBJECTS) + goals.index(ins.goal)] = 1.0
  return table


def split_of(instruction_id) -> str:
  """The finest split holding `instruction_id`: "train", "heldout_tasks", "heldout_phrasings" or
  "heldout_both" (a held-out task in a held-out phrasing); for generalization matrices."""
  ins = INSTRUCTIONS[int(instruction_id)]
  if ins.held_out_task and ins.held_out_phrasing:
    return "heldout_both"
  if ins.held_out_task:
    return "heldout_tasks"
  return "heldout_phrasings" if ins.held_out_phrasing else "train"
