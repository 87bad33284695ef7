"""Records that cannot be read or decoded: an error that names them, or skipping that counts them.

A TFRecord shard can be truncated (a copy cut short) or corrupted (a flipped bit fails a record's
CRC), and a record that reads fine can hold a feature that does not decode. tf.data reports any of
these as an `OpError` from the iterator (`DataLossError: truncated record at 4350706`), raised from
a reader thread that may run far ahead of the consumer, naming neither dataset, file nor feature.

How a failure is tied to its record. `map_windows` reads episode windows (`RldsSource.windows`
rows: shard index, first record, record count; the count is tfds' per-shard episode count from the
file instructions) and tags every record with its window row `j` and position `r` in the window
before the per-record map (parse, decode, standardize). Right after that map `ignore_errors` drops
any element whose read or map failed, and an in-graph `scan` compares the (j, r) that arrive, in
order, with the windows' record counts: a gap is exactly the records that were lost, whichever
thread hit the error. It costs one scan step per record; Python is called only on a gap. This was
chosen over re-scanning the data after a `DataLossError`: the error does not say where it came
from, so a re-scan could have to re-read every dataset of a mixture (terabytes for OXE), and it
could not count what `on_corrupt="skip"` skipped. On a gap `RecordGuard` records the lost records
and then, by `data.on_corrupt`:

- "raise" (default): raises inside the pipeline; the caller of the iterator (`DataLoader`,
  `mixture.compute_stats`) catches the `OpError` and raises `CorruptDataError` from `diagnose`,
  which re-reads that one window eagerly to find the cause: the first record that does not read
  (with the reader's message) or the feature that does not decode (`FeatureDecodeError`, raised by
  the decoders inside `decoding(feature)` when they run eagerly).
- "skip": logs a warning naming dataset, split, shard and records, and counts them; `report()`
  gives the distinct records and shards skipped (the same record skipped again in a later epoch
  or by the statistics pass counts once).

The TFRecord reader cannot resynchronize inside a shard after a bad record, so the rest of that
window (for a truncated shard: the rest of the shard) is lost with it; those records are counted.
Images are decoded after mixing (`frame_transforms`); `DataLoader` attributes an image that does
not decode by replaying the mixture from its last position, and skips it by excluding its record.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
from typing import Any, Callable

import numpy as np
import tensorflow as tf

ON_CORRUPT = ("raise", "skip")
_TAG = 2**32           # a record's tag: window row * _TAG + position in the window


class CorruptDataError(RuntimeError):
  """A record of a dataset could not be read or decoded; the message names dataset, split, shard,
  record and (for decode errors) feature, which are also attributes."""

  def __init__(self, message: str, dataset: str = "", split: str = "", file: str = "",
               record: int | None = None, feature: str | None = None):
    super().__init__(message)
    self.dataset, self.split, self.file = dataset, split, file
    self.record, self.feature = record, feature


class FeatureDecodeError(ValueError):
  """A feature of one record did not decode (raised in eager mode by `decoding`)."""

  def __init__(self, feature: str, cause: BaseException):
    super().__init__(f"feature '{feature}' cannot be decoded: {short_message(cause)}")
    self.feature = feature


@contextlib.contextmanager
def decoding(feature: str):
  """Names `feature` in errors of the ops run inside (eager mode: in graph mode ops fail later).

  The decoders (`rlds.parse_episode`, `oxe_registry.standardize`, `frame_transforms`) wrap each
  feature in it, so `diagnose`, which re-runs them eagerly, finds the feature.
  """
  try:
    yield
  except tf.errors.OpError as e:
    raise FeatureDecodeError(feature, e) from e


def short_message(error: BaseException) -> str:
  """`Type: message` of an error without tf's `{{function_node ...}}` and `[Op:...]` noise."""
  if isinstance(error, FeatureDecodeError):
    return str(error)
  text = error.message if isinstance(error, tf.errors.OpError) else str(error)
  text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
  text = re.sub(r"\s*\[\[\{\{node [^]]*\]\]", "", text)
  text = re.sub(r"\s*\[Op:[^]]*\](\s*name:\s*\S*)?", "", text)
  return f"{type(error).__name__}: {' '.join(text.split())}"


def check_mode(on_corrupt: str) -> str:
  if on_corrupt not in ON_CORRUPT:
    raise ValueError(f"data.on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
  return on_corrupt


class RecordGuard:
  """Accounts for the records of one source (a dataset split) read through `map_windows`.

  `source` needs `name`, `split` and `files` (shard paths, indexed by the windows' first column).
  Thread-safe: gaps are reported from tf.data threads.
  """

  def __init__(self, source, on_corrupt: str = "raise"):
    self.source = source
    self.on_corrupt = check_mode(on_corrupt)
    self._lock = threading.Lock()
    self._skipped: dict[int, set[int]] = {}         # shard index -> record indices
    self.failure: dict[str, Any] | None = None      # "raise": the first window with lost records
    self.exhausted: str | None = None               # "skip": every record this process reads lost
    self._reads: dict[int, list[tuple[int, int]]] | None = None   # shard -> [(first, end)]
    self._reads_total = self._reads_lost = 0

  def set_reads(self, windows: np.ndarray) -> None:
    """The windows this process trains on: under "skip", losing every record of them is an error
    (else the stream would loop forever over empty epochs)."""
    self._reads = {}
    for file_index, start, count in np.asarray(windows, np.int64).reshape(-1, 3).tolist():
      self._reads.setdefault(file_index, []).append((start, start + count))
    self._reads_total = int(np.asarray(windows).reshape(-1, 3)[:, 2].sum())
    with self._lock:            # records lost before (statistics pass) count as well
      self._reads_lost = sum(any(a <= r < b for a, b in self._reads.get(f, ()))
                             for f, records in self._skipped.items() for r in records)

  def where(self, file_index: int | None = None) -> str:
    text = f"dataset '{self.source.name}' split '{self.source.split}'"
    return text if file_index is None else f"{text} shard '{self.source.files[file_index]}'"

  def lost(self, window: tuple[int, int, int], records: list[int], cause: str = "") -> str:
    """Records `records` of `window` (shard, first, count) as lost.

    "skip": counts them and logs a warning (once per record); returns "" (or, once every record
    of `set_reads` is lost, the message the pipeline raises). "raise": keeps the first failure
    for `diagnose` and returns the message the pipeline raises.
    """
    file_index = int(window[0])
    with self._lock:
      known = self._skipped.setdefault(file_index, set())
      new = sorted(set(records) - known)
      known.update(records)
      if self._reads is not None:
        spans = self._reads.get(file_index, ())
        self._reads_lost += sum(any(a <= r < b for a, b in spans) for r in new)
        if self._reads_lost >= self._reads_total and self.exhausted is None:
          self.exhausted = (f"{self.where()}: all {self._reads_total} records this process reads "
                            "were skipped as unreadable or undecodable (see the warnings): "
                            "nothing is left to train on")
      if self.on_corrupt == "raise" and self.failure is None:
        self.failure = {"window": tuple(int(w) for w in window), "records": sorted(records),
                        "cause": cause}
    detail = f" ({cause})" if cause else ""
    if self.on_corrupt == "raise":
      return (f"{self.where(file_index)}: records {_ranges(records)} could not be read or "
              f"decoded{detail}")
    if new:
      logging.warning("%s: skipped %d record(s) %s that could not be read or decoded%s "
                      "(data.on_corrupt='skip')", self.where(file_index), len(new), _ranges(new),
                      detail)
    return self.exhausted or ""

  def report(self) -> dict[str, Any]:
    """{"skipped_records", "corrupt_shards" (shards with a skipped record), "shards": {path: records}}."""
    with self._lock:
      shards = {self.source.files[f]: sorted(r) for f, r in sorted(self._skipped.items()) if r}
    return {"skipped_records": sum(len(r) for r in shards.values()),
            "corrupt_shards": len(shards), "shards": shards}

  def checked(self, values: tf.data.Dataset, windows: tf.Tensor) -> tf.data.Dataset:
    """(value, j, r) in window order -> (value, origin) without the failed elements, accounted."""
    windows = tf.convert_to_tensor(windows, tf.int64)
    counts = windows[:, 2]
    n = tf.shape(windows, out_type=tf.int64)[0]
    values = values.ignore_errors()
    empty = tf.nest.map_structure(
        lambda s: tf.zeros([0 if d is None else d for d in s.shape], s.dtype),
        values.element_spec[0])
    values = values.concatenate(tf.data.Dataset.from_tensors((empty, n, tf.constant(0, tf.int64))))

    def report(rows, cur_j, next_r, j, r):
      rows, cur_j, next_r, j, r = rows.numpy(), int(cur_j), int(next_r), int(j), int(r)
      gaps = []                                     # (window, positions) with missing records
      if j == cur_j:
        gaps.append((rows[cur_j], range(next_r, r)))
      else:
        gaps.append((rows[cur_j], range(next_r, int(rows[cur_j][2]))))
        gaps += [(rows[k], range(int(rows[k][2]))) for k in range(cur_j + 1, j)]
        if j < len(rows):
          gaps.append((rows[j], range(r)))
      messages = [self.lost(tuple(window), [int(window[1]) + p for p in positions])
                  for window, positions in gaps if len(positions)]
      return "; ".join(dict.fromkeys(m for m in messages if m))

    def on_gap(cur_j, next_r, j, r):
      message = tf.py_function(report, [windows, cur_j, next_r, j, r], tf.string)
      # "raise": the pipeline stops here with the guard's message (no Python traceback noise).
      return tf.debugging.Assert(tf.equal(message, ""), [message])

    def step(state, element):
      cur_j, next_r = state
      value, j, r = element
      crossed = (next_r < tf.gather(counts, cur_j)) | (j > cur_j + 1) | (r > 0)
      gap = tf.where(tf.equal(j, cur_j), r > next_r, crossed)
      checked = tf.cond(gap, lambda: on_gap(cur_j, next_r, j, r), tf.no_op)
      with tf.control_dependencies([checked]):
        origin = tf.cond(j < n, lambda: tf.stack([windows[j, 0], windows[j, 1] + r]),
                         lambda: tf.constant([-1, -1], tf.int64))     # -1: the end sentinel
      return (j, r + 1), (value, origin)

    start = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    return values.scan(start, step).filter(lambda value, origin: origin[0] >= 0)


def map_windows(source, windows, fn: Callable[[tf.Tensor], Any], guard: RecordGuard | None = None,
                num_parallel_calls: int | None = None) -> tf.data.Dataset:
  """(fn(record), origin int64[2] (shard, record index)) for every record of `windows`, in order.

  `windows`: int64[N, 3] (shard, first record, count), read one by one with `source.read_window`
  (or `source.read_windows` of that row). With a `guard`, records that fail to read or `fn` are
  dropped and accounted (module docstring).
  """
  windows = tf.convert_to_tensor(windows, tf.int64)
  rows = tf.data.Dataset.from_tensor_slices(
      (tf.range(tf.shape(windows, out_type=tf.int64)[0]), windows))
  read_window = getattr(source, "read_window", None) or (
      lambda window: source.read_windows(window[None]))

  def read(j, window):             # tag = j * 2**32 + r; no per-window map (costly in flat_map)
    return read_window(window).enumerate(start=j * _TAG)

  def apply(tag, record):
    j, r = tag // _TAG, tag % _TAG
    value = fn(record)
    if guard is not None:
      return value, j, r
    return value, tf.stack([windows[j, 0], windows[j, 1] + r])

  parallel = {} if num_parallel_calls is None else {"num_parallel_calls": num_parallel_calls,
                                                     "deterministic": True}
  values = rows.flat_map(read).map(apply, **parallel)
  return values if guard is None else guard.checked(values, windows)


def diagnose(guard: RecordGuard, fn: Callable[[tf.Tensor], Any],
             error: BaseException | None = None) -> CorruptDataError:
  """The `CorruptDataError` for `guard.failure`: re-reads its window eagerly to find the cause."""
  failure = guard.failure or {}
  file_index, start, count = failure["window"]
  missing = set(failure["records"])
  source = guard.source
  where = guard.where(file_index)
  lost = f"records {_ranges(sorted(missing))} of this shard were lost"
  iterator = iter(source.read_windows(tf.constant([[file_index, start, count]], tf.int64)))
  for record in range(start, start + count):
    try:
      serialized = next(iterator)
    except StopIteration:
      return CorruptDataError(
          f"{where}: the shard ends before record {record} (the dataset's file instructions "
          f"expect records {start}..{start + count - 1}); {lost}", source.name, source.split,
          source.files[file_index], record)
    except tf.errors.OpError as e:
      return CorruptDataError(
          f"{where}: record {record} cannot be read: {short_message(e)}; {lost} (a truncated or "
          "corrupted file: re-download or re-generate it, or set data.on_corrupt='skip')",
          source.name, source.split, source.files[file_index], record)
    if record not in missing:
      continue
    try:
      fn(serialized)
    except FeatureDecodeError as e:
      return CorruptDataError(
          f"{where}: record {record}: {e} (or set data.on_corrupt='skip')", source.name,
          source.split, source.files[file_index], record, e.feature)
    except (tf.errors.OpError, ValueError, TypeError) as e:
      feature = _parse_error_feature(e)
      named = f"feature '{feature}' " if feature else ""
      return CorruptDataError(
          f"{where}: record {record}: {named}cannot be decoded: {short_message(e)} (or set "
          "data.on_corrupt='skip')", source.name, source.split, source.files[file_index], record,
          feature)
  cause = f": {short_message(error)}" if error is not None else ""
  return CorruptDataError(
      f"{where}: records {_ranges(sorted(missing))} failed in the input pipeline{cause}, but read "
      "and decode when re-read alone (a transient read error?)", source.name, source.split,
      source.files[file_index], min(missing))


def raise_from(error: BaseException, guards: list[tuple[RecordGuard, Callable]]) -> None:
  """Raises the diagnosed `CorruptDataError` of the first guard with a failure (or with every
  record skipped), else nothing."""
  for guard, fn in guards:
    if guard is not None and guard.failure is not None:
      raise diagnose(guard, fn, error) from error
    if guard is not None and guard.exhausted is not None:
      raise CorruptDataError(guard.exhausted, guard.source.name, guard.source.split) from error


def _parse_error_feature(error: BaseException) -> str | None:
  """The feature named by tf.io.parse_example's message (`Key: steps/action.  Data types ...`)."""
  match = re.search(r"Key: ([^\s,]+?)\.?\s", str(getattr(error, "message", error)))
  return match.group(1) if match else None


def _ranges(records) -> str:
  """[2, 3, 4, 7] -> "2-4, 7"."""
  records = sorted(int(r) for r in records)
  parts, i = [], 0
  while i < len(records):
    k = i
    while k + 1 < len(records) and records[k + 1] == records[k] + 1:
      k += 1
    parts.append(str(records[i]) if k == i else f"{records[i]}-{records[k]}")
    i = k + 1
  return ", ".join(parts)


def total(reports: dict[str, dict]) -> dict[str, int]:
  """Sums `RecordGuard.report()`s over datasets."""
  return {"skipped_records": int(np.sum([r["skipped_records"] for r in reports.values()] or [0])),
          "corrupt_shards": int(np.sum([r["corrupt_shards"] for r in reports.values()] or [0]))}
