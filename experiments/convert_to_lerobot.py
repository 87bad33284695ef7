"""Converts an RLDS dataset (OXE registry name) to a LeRobot v3 dataset (parquet + mp4).

  python -m experiments.convert_to_lerobot --rlds_dir=/data/oxe/bridge/0.1.0 --name=bridge \
      --out=/data/lerobot/bridge --fps=5 [--split=train --episodes_per_file=50 --crf=23]

Each episode is standardized by `vlajax.data.oxe_registry` (common action, proprio, primary / wrist
camera, instruction) and written by `vlajax.data.lerobot_convert.rlds_to_lerobot`; `--fps` is the
control rate (RLDS does not record one). Prints the dataset's meta/info.json totals as JSON. The
result is read by `vlajax.data` with `data.lerobot_dirs.<name> = <out>` (and by LeRobot).
"""
import json
import os
import sys

from absl import app, flags


def main(argv):
  del argv
  from vlajax.data import lerobot_convert  # pylint: disable=g-import-not-at-top
  from vlajax.data import rlds  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  directory = lerobot_convert.rlds_to_lerobot(
      rlds.resolve_dataset_dir(f.rlds_dir), f.name, f.out, fps=f.fps, split=f.split,
      episodes_per_data_file=f.episodes_per_file, episodes_per_video_file=f.episodes_per_file,
      codec=f.codec, pix_fmt=f.pix_fmt, crf=None if f.crf < 0 else f.crf)
  with open(os.path.join(directory, "meta", "info.json")) as fp:
    info = json.load(fp)
  json.dump({"directory": directory, **{k: info[k] for k in (
      "codebase_version", "fps", "total_episodes", "total_frames", "total_tasks")},
      "features": sorted(info["features"])}, sys.stdout)
  sys.stdout.write("\n")


if __name__ == "__main__":
  # Defined here, not at import, so tests can import several entry points in one process.
  flags.DEFINE_string("rlds_dir", None, "RLDS dataset (version) directory.", required=True)
  flags.DEFINE_string("name", None, "its OXE registry name (vlajax.data.oxe_registry).",
                      required=True)
  flags.DEFINE_string("out", None, "LeRobot dataset directory to create.", required=True)
  flags.DEFINE_float("fps", None, "control rate of the data (frames per second).", required=True)
  flags.DEFINE_string("split", "train", "RLDS split (tfds syntax).")
  flags.DEFINE_integer("episodes_per_file", 50, "episodes per data parquet and per mp4.")
  flags.DEFINE_string("codec", "libx264", "PyAV video encoder (libx264, libx264rgb, libsvtav1).")
  flags.DEFINE_string("pix_fmt", "yuv420p", "video pixel format (rgb24 with libx264rgb).")
  flags.DEFINE_integer("crf", 23, "constant rate factor (0: lossless with x264; -1: codec default).")
  app.run(main)
