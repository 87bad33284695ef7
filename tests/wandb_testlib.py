"""Reads what a Weights & Biases offline run recorded, from its transaction log (`run-<id>.wandb`).

The file is a LevelDB-style log (the layout of wandb's own datastore): a 7-byte header (":W&B",
magic, version), then 32 KiB blocks of chunks, each `crc32 u32, length u16, type u8` + payload,
type 1 a whole record, 2/3/4 the first/middle/last piece of one; the records are
`wandb_internal_pb2.Record` protobufs. wandb 0.31 reads it in Go only, so the tests parse it here.
"""
from __future__ import annotations

import json
import pathlib
import struct
import time

_HEADER = 7
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes):
  assert data[:4] == b":W&B", "not a W&B transaction log"
  pos, pieces = _HEADER, b""
  while pos + _HEADER <= len(data):
    left = _BLOCK - pos % _BLOCK
    if left < _HEADER:   # block trailer padding
      pos += left
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
    if kind == 0 and length == 0:   # zero padding to the end of the block
      pos += left
      continue
    chunk = data[pos + _HEADER:pos + _HEADER + length]
    pos += _HEADER + length
    if kind == _FULL:
      yield chunk
    elif kind == _FIRST:
      pieces = chunk
    elif kind == _MIDDLE:
      pieces += chunk
    elif kind == _LAST:
      yield pieces + chunk


def _key(item) -> str:
  return "/".join(item.nested_key) if len(item.nested_key) else item.key


def _parsed_records(log: pathlib.Path, timeout_s: float):
  """The log's records once it holds the run's `exit` record: W&B's service (a separate process
  that outlives `run.finish()`) may still be flushing the file when the writer returns."""
  from wandb.proto import wandb_internal_pb2  # pylint: disable=import-outside-toplevel

  deadline = time.time() + timeout_s
  while True:
    records = []
    for raw in _records(log.read_bytes()):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(raw)
      records.append(record)
    if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() > deadline:
      return records
    time.sleep(0.2)


def read_offline_run(run_dir: str | pathlib.Path, timeout_s: float = 30.0) -> dict:
  """`{"id", "project", "name", "tags", "config": {key: value}, "history": {step: {key: value}}}`
  of the offline run directory `run_dir` (`.../wandb/offline-run-<time>-<id>`)."""
  (log,) = pathlib.Path(run_dir).glob("run-*.wandb")
  out = {"config": {}, "history": {}}
  for record in _parsed_records(log, timeout_s):
    kind = record.WhichOneof("record_type")
    if kind == "run":
      run = record.run
      out.update(id=run.run_id, project=run.project, name=run.display_name, tags=list(run.tags))
      out["config"].update({_key(u): json.loads(u.value_json) for u in run.config.update})
    elif kind == "config":
      out["config"].update({_key(u): json.loads(u.value_json) for u in record.config.update})
    elif kind == "history":
      row = {_key(i): json.loads(i.value_json) for i in record.history.item}
      out["history"].setdefault(int(row["_step"]), {}).update(row)
  return out


def offline_runs(wandb_dir: str | pathlib.Path) -> list[pathlib.Path]:
  """The offline run directories under a W&B directory (`$WANDB_DIR` or `<run dir>`), oldest first."""
  return sorted(pathlib.Path(wandb_dir).glob("wandb/offline-run-*"))
