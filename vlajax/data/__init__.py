"""RLDS / Open X-Embodiment data for VLA training, read with tensorflow-datasets.

Pipeline (Octo's order): read RLDS episodes -> standardize (per-dataset registry, `oxe_registry`) ->
normalize (`normalization`) -> trajectory transforms (history window, action chunks, padding to common
dims; images still encoded) -> frames -> deterministic block shuffle -> weighted mixture
(`mixture`) -> frame transforms (decode, resize, augment) -> batch -> JAX arrays sharded over the
mesh (`loader`). `writer` saves our own environments' episodes as RLDS that this reader loads.
`lerobot` reads LeRobot v3 datasets (parquet + mp4, config `lerobot_dirs`) into the same pipeline and
batch format, mixable with RLDS; `lerobot_convert` writes them (and converts RLDS to them).

Standardized batch (what `vlajax.data.loader.DataLoader` yields; B = global batch, T = observation
history `window`, H = action `horizon`, A = `action_dim`, P = `proprio_dim`; all JAX arrays sharded
over the mesh's `data` axis on dim 0 unless marked host-local):

  {
    "observation": {
      "image_primary": uint8[B, T, h, w, 3],   # scene camera, resized to `image_size` (h, w)
      "image_wrist":   uint8[B, T, h, w, 3],   # wrist camera (zeros where the dataset has none)
      "image_mask": {"primary": bool[B, T], "wrist": bool[B, T]},  # camera present at that step
      "proprio":      float32[B, T, P],        # normalized state, zero-padded to P
      "proprio_mask": bool[B, T, P],           # True on the dataset's real state dims
      "timestep_pad_mask": bool[B, T],         # False for history steps before the episode start
      # only with data.goal_relabel = "last" | "uniform" (image_mask then also has "goal": bool[B, 1]):
      "image_goal":   uint8[B, 1, h, w, 3],    # primary camera at a later step of the same episode
    },
    "action":          float32[B, H, A],       # normalized action chunk a_t .. a_{t+H-1}
    "action_pad_mask": bool[B, H, A],          # False past the episode end and on padded dims
    "instruction":  bytes[B]  (numpy object array, host-local: this process's rows only),
    "dataset_id":   int32[B],                  # index into the loader's `dataset_names`
    "dataset_name": bytes[B]  (numpy object array, host-local),
    "is_robot":     bool[B],                   # False for vision-language co-training rows
    "answer":       bytes[B]  (numpy object array, host-local; b"" for robot rows),
  }

Action layout before padding: end-effector datasets use [dx, dy, dz, droll, dpitch, dyaw, gripper]
(7 dims) with gripper absolute, 1 = open, 0 = closed (one convention for every dataset); 2-D
datasets (language_table) fill dx, dy and mask the rest; joint-space datasets keep their joint
actions (n joints + gripper) with their own dimension. Normalization leaves the gripper dim as is.
Action chunks past the episode end repeat the last action and are masked out.

The loader's `state()` is a dict of ints (JSON/msgpack-serializable) that a training checkpoint can
store; `DataLoader(..., state=saved)` continues with exactly the next batch.
"""
