"""Rollout videos: frames of recorded episodes with the instruction and the success overlaid.

`render_episode(renderer, trace, index)` draws episode `index` of a trace recorded by
`rollout(..., record=vlajax.envs.rollout.render_trace)` (leaves [T, N, ...]) up to `length`
steps, one camera, as uint8 [T, H, W, 3]; `annotate` writes a caption and a status bar (green once
the episode has succeeded) onto the frames with Pillow; `write_mp4` encodes H.264 with PyAV.
The frames come from the nominal model (per-episode DR of sizes or colours is not drawn).
"""
from __future__ import annotations

import pathlib
import types

import numpy as np

SUCCESS_RGB = (40, 180, 60)
RUNNING_RGB = (200, 60, 40)


def render_episode(renderer, trace: dict, index: int, length: int | None = None,
                   camera: str = "primary") -> np.ndarray:
  """uint8 [T, H, W, 3]: episode `index` of `trace` (`render_trace` leaves [T, N, ...])."""
  qpos = np.asarray(trace["qpos"])
  if not 0 <= index < qpos.shape[1]:
    raise IndexError(f"episode {index} not in the trace ({qpos.shape[1]} episodes)")
  steps = qpos.shape[0] if length is None else int(length)
  data = types.SimpleNamespace(qpos=qpos[:steps, index],
                               mocap_pos=np.asarray(trace["mocap_pos"])[:steps, index],
                               mocap_quat=np.asarray(trace["mocap_quat"])[:steps, index])
  return renderer.render(data, cameras=(camera,))[camera]


def annotate(frames: np.ndarray, caption: str, success: np.ndarray, scale: int = 2) -> np.ndarray:
  """uint8 [T, scale H + bar, scale W, 3]: `frames` upscaled by `scale` (so text stays legible at
  64x64) with `caption` on top and a bar below, red until the per-step `success` (bool[T]) first
  holds, then green."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  success = np.maximum.accumulate(np.asarray(success, bool))
  if frames.ndim != 4 or frames.shape[-1] != 3 or success.shape != frames.shape[:1]:
    raise ValueError(f"frames must be uint8 [T, H, W, 3] and success bool[T], got {frames.shape} "
                     f"and {success.shape}")
  out = []
  for frame, done in zip(frames, success):
    image = Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale),
                                          Image.NEAREST)
    canvas = Image.new("RGB", (image.width, image.height + 8 * scale), (0, 0, 0))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, image.height, image.width, canvas.height],
                   fill=SUCCESS_RGB if done else RUNNING_RGB)
    draw.text((2, 1), caption, fill=(255, 255, 255))
    out.append(np.asarray(canvas))
  return np.stack(out)


def write_mp4(path: str | pathlib.Path, frames: np.ndarray, fps: float) -> pathlib.Path:
  """Encodes uint8 [T, H, W, 3] frames as H.264 mp4 (even sizes: odd ones are cropped by one)."""
  import av  # pylint: disable=import-outside-toplevel
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(f"frames must be uint8 [T>0, H, W, 3], got {frames.dtype} {frames.shape}")
  frames = frames[:, :frames.shape[1] // 2 * 2, :frames.shape[2] // 2 * 2]
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), mode="w") as container:
    stream = container.add_stream("libx264", rate=max(1, round(fps)))
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path
