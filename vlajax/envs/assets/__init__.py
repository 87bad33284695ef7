"""MJCF models of our own. `path(name)` gives the file, `load(name)` the compiled `MjModel`."""
import pathlib

import mujoco

ASSETS = pathlib.Path(__file__).parent


def path(name: str) -> pathlib.Path:
  file = ASSETS / f"{name}.xml"
  if not file.exists():
    known = sorted(p.stem for p in ASSETS.glob("*.xml"))
    raise FileNotFoundError(f"no MJCF asset '{name}' (have: {', '.join(known)})")
  return file


def load(name: str) -> mujoco.MjModel:
  return mujoco.MjModel.from_xml_path(str(path(name)))
