"""VLA training (`experiments.train_vla` over the imitation trainer and loop): overfitting, 1 vs 4
devices (data x fsdp), resume, two processes, freezing, bf16 frozen weights, RLDS input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import train_vla
from experiments.configs import train_vla as configs
from vlajax.imitation import train as imitation_train
from vlajax.vla import batch as batch_lib
from vlajax.vla import train as train_lib
from vlajax.vla.pi0 import Pi0
from vlajax.vla.synthetic import SyntheticVLADataset
from vlajax.vla.tokenizer import ByteTokenizer


def _config(steps, mesh=(1, 1), **train):
  """The smoke config (tiny model, synthetic data) on the first data*fsdp devices."""
  c = configs.get_config("smoke")
  c.train.update(dict(dict(steps=steps, log_every=1, eval_every=0, checkpoint_every=2), **train))
  c.mesh.update(dict(data=mesh[0], fsdp=mesh[1], num_devices=mesh[0] * mesh[1]))
  return c


def _optim(**fields):
  """The VLA config's optimizer (openpi's recipe) with `fields` changed."""
  return dataclasses.replace(imitation_train.optim_config(configs.get_config("pi0").optim), **fields)


def test_tiny_model_overfits_a_small_dataset(tmp_path):
  c = _config(500, checkpoint_every=10_000, log_every=10)
  c.data.num_train = 4
  result = train_vla.train(c, str(tmp_path / "run"))
  losses = np.array([loss for _, loss in result["losses"]])
  first, last = losses[:2].mean(), losses[-5:].mean()
  assert last < first / 10, (first, last)
  # Sampled chunks (10 Euler steps, KV cache) reproduce the training targets.
  model = Pi0(train_vla.model_config(c.model))
  examples = SyntheticVLADataset(model.config, 4, seed=c.train.seed).all()
  obs = {k: examples[k] for k in batch_lib.OBSERVATION_KEYS}
  sampled = np.asarray(train_lib.make_sampler(model, 10, True)(result["state"].params, obs, jax.random.PRNGKey(0)))
  error = np.abs(sampled - examples["actions"])
  # Targets have mean |a| ~ 0.6; stated tolerance: mean error < 0.06, worst entry < 0.3.
  assert error.mean() < 0.06 and error.max() < 0.3, (error.mean(), error.max())


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
  """4 steps on a 2 (data) x 2 (fsdp) mesh of CPU devices, checkpoints at steps 2 and 4."""
  workdir = tmp_path_factory.mktemp("vla") / "sharded"
  return train_vla.train(_config(4, mesh=(2, 2)), str(workdir)), workdir


def test_one_device_and_four_devices_give_matching_losses(sharded_run, tmp_path):
  sharded, _ = sharded_run
  single = train_vla.train(_config(4, mesh=(1, 1)), str(tmp_path / "single"))
  a = np.array([loss for _, loss in single["losses"]])
  b = np.array([loss for _, loss in sharded["losses"]])
  assert len(a) == len(b) == 4 and np.all(np.diff(a) != 0)
  np.testing.assert_allclose(b, a, rtol=2e-4)
  # The 4-device state really is FSDP-sharded, and parameters agree after 4 updates.
  state = sharded["state"]
  specs = {str(x.sharding.spec) for x in jax.tree.leaves(state.params)}
  assert any("fsdp" in s for s in specs), specs
  assert any("fsdp" in str(x.sharding.spec) for x in jax.tree.leaves(state.opt_state) if hasattr(x, "sharding"))
  for x, y in zip(jax.tree.leaves(single["state"].params), jax.tree.leaves(state.params)):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=2e-4, rtol=2e-3)


def test_resume_equals_an_uninterrupted_run(sharded_run, tmp_path):
  uninterrupted, _ = sharded_run
  workdir = str(tmp_path / "resumed")
  first = train_vla.train(_config(2, mesh=(2, 2)), workdir)        # "interrupted" after step 2
  assert [s for s, _ in first["losses"]] == [1, 2]
  second = train_vla.train(_config(4, mesh=(2, 2)), workdir)       # same command, longer: resumes
  assert [s for s, _ in second["losses"]] == [3, 4]
  np.testing.assert_array_equal([l for _, l in first["losses"] + second["losses"]],
                                [l for _, l in uninterrupted["losses"]])
  for x, y in zip(jax.tree.leaves(second["state"]), jax.tree.leaves(uninterrupted["state"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one_process(sharded_run, tmp_path):
  """2 processes x 2 CPU devices under jax.distributed, mesh data=2 (across processes) x fsdp=2:
  identical params on both hosts, equal to the single-process 2 x 2 run with the same global batch."""
  import os
  import pathlib
  import subprocess
  import sys
  repo = pathlib.Path(__file__).resolve().parents[1]
  port, outs = _free_port(), [tmp_path / f"p{i}.npz" for i in range(2)]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, str(repo / "tests" / "multihost_vla.py"), str(i), "2", str(port),
                             str(tmp_path / "run"), str(outs[i])], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  a, b = (np.load(o) for o in outs)
  assert set(a.files) == set(b.files) and len(a.files) > 10
  for key in a.files:
    np.testing.assert_array_equal(a[key], b[key])
  single, _ = sharded_run
  np.testing.assert_allclose(a["losses"], [loss for _, loss in single["losses"]], rtol=2e-4)
  leaves = jax.tree.leaves(single["state"].params)
  assert len(leaves) == len(a.files) - 1
  for i, x in enumerate(leaves):
    np.testing.assert_allclose(a[f"arr_{i}"], np.asarray(x), atol=2e-4, rtol=2e-3)
  from vlajax.core.checkpoint import Checkpointer
  assert Checkpointer(tmp_path / "run" / "checkpoints").all_steps() == [2, 4]


def test_freezing_options_zero_the_right_updates():
  cfg = train_vla.model_config(configs.get_config("smoke").model)
  model = Pi0(cfg)
  key = jax.random.PRNGKey(0)
  params = jax.eval_shape(lambda k: model.init(k, batch_lib.zeros_batch(cfg, 1), k), key)
  params = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), params)
  grads = jax.tree.map(np.ones_like, params)
  optim = _optim(peak_lr=1e-2, warmup_steps=0)
  for freeze, frozen_expected, trained_expected in [
      ("none", [], ["vision/encoder", "decoder/layers/attn_0", "decoder/layers/attn_1"]),
      ("vision", ["vision/encoder", "vision/embedding"], ["vision/head", "decoder/layers/mlp_0"]),
      ("vision_llm", ["vision/encoder", "decoder/embedder", "decoder/layers/attn_0", "decoder/final_norm_0"],
       ["vision/head", "decoder/layers/attn_1", "decoder/layers/mlp_1", "state_proj", "action_out_proj"]),
  ]:
    tx = imitation_train.make_optimizer(optim, params, train_lib.frozen_predicate(freeze))
    updates = jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])(grads, params)
    moved = {}
    for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
      name = "/".join(str(getattr(k, "key", k)) for k in path)
      moved[name] = bool(np.any(np.asarray(u) != 0))
    for prefix in frozen_expected:
      hits = [v for k, v in moved.items() if f"params/{prefix}" in k]
      assert hits and not any(hits), (freeze, prefix)
    for prefix in trained_expected:
      hits = [v for k, v in moved.items() if f"params/{prefix}" in k]
      assert hits and all(hits), (freeze, prefix)
  with pytest.raises(ValueError, match="freeze"):
    train_lib.frozen_predicate("everything")


def test_frozen_parameters_are_bfloat16_under_bf16_compute_and_never_move():
  """freeze=vision_llm with bf16 compute: frozen leaves stored bf16 (params and EMA), trainable ones
  float32 master weights with float32 Adam moments (none for frozen leaves); 3 steps leave the frozen
  leaves bit-identical and move every trainable one."""
  from vlajax.core import mesh as mesh_lib
  cfg = train_vla.model_config(configs.get_config("smoke").model).replace(dtype="bfloat16")
  model = Pi0(cfg)
  optim = _optim(peak_lr=1e-2, warmup_steps=0, ema_decay=0.9)
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1}, devices=jax.devices()[:1])
  trainer = train_vla.make_trainer(model, optim, mesh, "vision_llm")
  state = trainer.init(jax.random.PRNGKey(0))
  frozen = jax.tree.leaves(imitation_train.frozen_mask(state.params,
                                                       train_lib.frozen_predicate("vision_llm")))
  assert 0 < sum(frozen) < len(frozen)
  for tree in (state.params, state.ema_params):
    dtypes = [x.dtype for x in jax.tree.leaves(tree)]
    assert all(d == (jnp.bfloat16 if f else jnp.float32) for d, f in zip(dtypes, frozen)), dtypes
  moments = [x for x in jax.tree.leaves(state.opt_state) if jnp.issubdtype(x.dtype, jnp.floating)]
  trainable = sum(x.size for x, f in zip(jax.tree.leaves(state.params), frozen) if not f)
  assert all(x.dtype == jnp.float32 for x in moments) and sum(x.size for x in moments) == 2 * trainable
  # The vision-only option keeps the LM in float32; float32 compute keeps everything float32.
  in_vit = lambda name: name.startswith("params/vision/") and "/head/" not in name
  for dtype, freeze, expect_bf16 in [("bfloat16", "vision", in_vit), ("float32", "vision_llm", lambda _: False)]:
    abstract = jax.eval_shape(train_vla.make_trainer(Pi0(cfg.replace(dtype=dtype)), optim, mesh, freeze).init,
                              jax.random.PRNGKey(0))
    names = []
    for path, x in jax.tree_util.tree_flatten_with_path(abstract.params)[0]:
      names.append(imitation_train.path_str(path))
      assert (x.dtype == jnp.bfloat16) == expect_bf16(names[-1]), (dtype, freeze, names[-1])
    assert any(map(in_vit, names))

  before = jax.device_get(state)
  data = SyntheticVLADataset(cfg, 16, seed=0)
  for i in range(3):
    state, metrics = trainer.step(state, batch_lib.to_head_batch(data.batch(i, 8)))
    assert np.isfinite(float(metrics["loss"]))
  after = jax.device_get(state)
  for f, b, a, e in zip(frozen, jax.tree.leaves(before.params), jax.tree.leaves(after.params),
                        jax.tree.leaves(after.ema_params)):
    if f:
      assert a.dtype == jnp.bfloat16
      np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
      np.testing.assert_array_equal(np.asarray(e, np.float32), np.asarray(b, np.float32))
    else:
      assert a.dtype == jnp.float32 and np.any(a != b)


def test_bad_config_values_are_named(tmp_path):
  c = _config(1)
  c.data.source = "parquet"
  with pytest.raises(ValueError, match="data.source"):
    train_vla.train(c, str(tmp_path / "bad"))
  c = _config(1)
  c.train.batch_size = 7
  c.mesh.update(dict(data=2, fsdp=2, num_devices=4))
  with pytest.raises(ValueError, match="batch_size"):
    train_vla.train(c, str(tmp_path / "bad2"))


def _sim_episode(k, length, rng):
  """An RLDS episode as our writer stores sim demos: 28x28 image, 8-d state, 7-d action, text."""
  return {
      "observation": {"image": rng.integers(0, 256, (length, 28, 28, 3), dtype=np.uint8),
                      "state": rng.standard_normal((length, 8)).astype(np.float32)},
      "action": np.concatenate([np.full((length, 6), 0.1 * k, np.float32),
                                (np.arange(length) % 2)[:, None].astype(np.float32)], 1),
      "language_instruction": f"pick block {k}",
  }


def test_trains_and_evaluates_on_rlds_episodes_on_disk(tmp_path):
  import ml_collections
  pytest.importorskip("tensorflow_datasets")
  from vlajax.data import oxe_registry, writer

  rng = np.random.default_rng(0)
  writer.write_rlds(str(tmp_path / "data"), "vla_test_pick",
                    {"train": [_sim_episode(k, 5 + k, rng) for k in range(4)],
                     "val": [_sim_episode(9, 6, rng)]})
  oxe_registry.register_generic("vla_test_pick", primary_image="image", state_key="state",
                                state_dim=8, action_dim=7)
  c = _config(2, eval_every=2)
  c.data.source = "rlds"
  c.data.rlds.update(dict(data_root=str(tmp_path / "data"), train_split="train", val_split="val",
                          image_size=(28, 28), horizon=4, action_dim=8, proprio_dim=8, augment=False,
                          episodes_per_window=2, windows_per_block=2, num_parallel_calls=1))
  c.data.rlds.weights = ml_collections.ConfigDict({"vla_test_pick": 1.0})
  result = train_vla.train(c, str(tmp_path / "run"))
  assert len(result["losses"]) == 2 and all(np.isfinite(l) for _, l in result["losses"])
  assert set(result["eval"]) == {"eval_loss", "sampled_action_mse", "sampled_action_mae"}
  assert all(np.isfinite(v) for v in result["eval"].values())
  from vlajax.core.checkpoint import Checkpointer
  meta = Checkpointer(result["run_dir"] / "checkpoints").metadata()
  assert meta["step"] == 2 and "vla_test_pick" in meta["data"]["streams"]   # loader position saved
  _served_policy_uses_the_dataset_units(result, rng)


def _served_policy_uses_the_dataset_units(result, rng):
  """``load_policy`` of an RLDS run takes native 8-d states and returns native 7-d actions: the
  state normalized and the sampled chunk un-normalized with the statistics the loader computed."""
  import glob
  import json
  from vlajax.data import normalization, oxe_registry
  from vlajax.vla import load_policy

  fn, info = load_policy(result["run_dir"], prompt="text")
  assert info["dataset_name"] == "vla_test_pick" and info["normalization"] == "normal"
  assert info["action_dim"] == 7 and info["observation_spec"]["state"]["shape"] == [8]
  saved = [json.loads(open(f).read()) for f in glob.glob(str(result["run_dir"] / "stats_vla_test_pick_*.json"))]
  (stats,) = [s for s in saved if s["identity"]["split"] == "train"]     # train and val splits are cached
  spec = oxe_registry.spec("vla_test_pick")
  image = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
  state = rng.standard_normal(8).astype(np.float32) * 2 + 1
  key = jax.random.PRNGKey(4)
  chunk = fn({"image": {"primary": image, "wrist": image}, "state": state, "prompt": "pick block 2"}, rng=key)
  model = Pi0(train_vla.model_config(configs.get_config("smoke").model))
  tokens, mask = ByteTokenizer(model.config.vocab_size, model.config.max_token_len)(["pick block 2"])
  batch = {"images": np.stack([image, image])[None].astype(np.float32) / 127.5 - 1.0,
           "image_mask": np.ones((1, 2), bool), "tokens": tokens, "token_mask": mask,
           "state": normalization.normalize(state, stats["proprio"], "normal")[None]}
  normalized = np.asarray(train_lib.make_sampler(model, 10, True)(result["state"].ema_params, batch, key))[0]
  expected = normalization.unnormalize(normalized[:, :7], stats["action"], "normal", spec.normalize_action)
  assert chunk.shape == (4, 7)
  np.testing.assert_allclose(chunk, expected, atol=1e-4, rtol=1e-4)
  assert np.abs(chunk[:, :6] - normalized[:, :6]).max() > 1e-3    # the un-normalization did something


@pytest.mark.slow
def test_gradient_accumulation_averages_micro_batch_gradients():
  """grad_accum=2 equals averaging the gradients of the two interleaved micro-batches by hand."""
  import optax
  from vlajax.core import mesh as mesh_lib
  cfg = train_vla.model_config(configs.get_config("smoke").model)
  model = Pi0(cfg)
  optim = _optim(peak_lr=1e-2, warmup_steps=0, ema_decay=None, grad_accum=2)
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1}, devices=jax.devices()[:1])
  trainer = train_vla.make_trainer(model, optim, mesh)
  state = trainer.init(jax.random.PRNGKey(0))
  batch = SyntheticVLADataset(cfg, 8, seed=0).batch(0, 8)
  before = jax.device_get(state)
  after, metrics = trainer.step(state, batch_lib.to_head_batch(batch))
  _, step_rng = jax.random.split(before.rng)
  grad_fn = jax.jit(jax.value_and_grad(lambda p, b, r: model.apply(p, b, r)[0]))
  losses, grads = [], []
  for i in range(2):
    micro = {k: v[i::2] for k, v in batch.items()}
    loss, g = grad_fn(before.params, micro, jax.random.fold_in(step_rng, i))
    losses.append(loss)
    grads.append(g)
  mean_grads = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
  updates, _ = trainer.tx.update(mean_grads, before.opt_state, before.params)
  expected = optax.apply_updates(before.params, updates)
  assert float(metrics["loss"]) == pytest.approx(float(np.mean(losses)), rel=1e-5)
  for x, y in zip(jax.tree.leaves(after.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=1e-4)
