"""The `tabletop_language` instruction table: families, phrasings, the held-out splits, bad input."""
import numpy as np
import pytest

from vlajax.envs.manipulation import instructions as ins


def _ids(split, families=ins.FAMILIES):
  return set(ins.instruction_ids(split, families).tolist())


def test_table_size_and_words():
  assert len(ins.INSTRUCTIONS) == (4 + 8 + 16) * 3
  texts = [ins.text(i) for i in range(len(ins.INSTRUCTIONS))]
  assert len(set(texts)) == len(texts)          # every instruction reads differently
  assert "put the blue cube on the white plate" in texts
  assert "push the yellow cube to the left" in texts
  assert "pick up the red cube" in texts
  assert all("{" not in t for t in texts)
  assert ins.text(np.int32(0)) == texts[0]      # array scalars, as stored in state.info


def test_splits_partition_the_table():
  train, tasks, phrasings, heldout = (_ids(s) for s in ("train", "heldout_tasks",
                                                         "heldout_phrasings", "heldout"))
  assert (len(train), len(tasks), len(phrasings), len(heldout)) == (44, 12, 22, 40)
  assert not train & heldout and train | heldout == _ids("all")
  assert tasks | phrasings < heldout and not tasks & phrasings
  for i in train:
    entry = ins.INSTRUCTIONS[i]
    assert (entry.family, entry.object, entry.goal) not in ins.HELD_OUT_TASKS
    assert entry.phrasing != len(ins.PHRASINGS[entry.family]) - 1
  # Every held-out task's object and goal are each seen in training, only not together.
  seen = [ins.INSTRUCTIONS[i] for i in train]
  for family, obj, goal in ins.HELD_OUT_TASKS:
    assert any(s.family == family and s.object == obj for s in seen) or family == "pick"
    assert any(s.object == obj for s in seen)
    assert any(s.family == family and s.goal == goal for s in seen)
  assert {ins.split_of(i) for i in heldout} == {"heldout_tasks", "heldout_phrasings",
                                                "heldout_both"}
  assert {ins.split_of(i) for i in train} == {"train"}


def test_families_filter_and_encoding():
  pushes = ins.instruction_ids("all", ("push",))
  assert len(pushes) == 16 * 3 and all(ins.INSTRUCTIONS[i].family == "push" for i in pushes)
  table = ins.encoding_table()
  assert table.shape == (84, 13)
  assert np.all(table[:, :3].sum(1) == 1) and np.all(table[:, 3:7].sum(1) == 1)
  picks = [i for i, e in enumerate(ins.INSTRUCTIONS) if e.family == "pick"]
  assert np.all(table[picks, 7:] == 0) and np.all(np.delete(table, picks, 0)[:, 7:].sum(1) == 1)
  # Phrasings of one task share the encoding.
  np.testing.assert_array_equal(table[0], table[1])


def test_bad_input_names_the_problem():
  with pytest.raises(ValueError, match="instruction family \\['stack'\\]"):
    ins.instruction_ids("train", ("pick", "stack"))
  with pytest.raises(ValueError, match="split 'val'"):
    ins.instruction_ids("val")
  with pytest.raises(ValueError, match="no instruction families"):
    ins.instruction_ids("train", ())
  with pytest.raises(IndexError, match="instruction id 84"):
    ins.text(84)
