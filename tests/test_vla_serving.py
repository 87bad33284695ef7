"""Deploying a VLA checkpoint: ``vlajax.vla.load_policy`` and the policy server over a websocket."""
import jax
import numpy as np
import pytest

from experiments import train_vla
from experiments.configs import train_vla as configs
from vlajax.bridge import policies
from vlajax.bridge.client import PolicyClient, ServerError
from vlajax.bridge.server import PolicyServer
from vlajax.vla import load_policy
from vlajax.vla import policy as policy_lib
from vlajax.vla import train as train_lib
from vlajax.vla.synthetic import SyntheticVLADataset
from vlajax.vla.tokenizer import ByteTokenizer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A real 4-step ``train_vla`` run (smoke config: tiny model, synthetic data, EMA on, 1 device)."""
  c = configs.get_config("smoke")
  c.train.update(dict(steps=4, log_every=1, eval_every=0, checkpoint_every=2))
  c.mesh.update(dict(data=1, fsdp=1, num_devices=1))
  c.data.control_hz = 15.0
  workdir = tmp_path_factory.mktemp("vla_serving") / "run"
  result = train_vla.train(c, str(workdir))
  return result, c


def _observation(cfg, row=0, prompt=None):
  """One unbatched observation in the served format (uint8 cameras), from synthetic example ``row``."""
  ex = SyntheticVLADataset(cfg, row + 1, seed=5).all()
  images = np.round((ex["images"][row] + 1.0) * 127.5).astype(np.uint8)
  obs = {"image": {"primary": images[0], "wrist": images[1]}, "state": ex["state"][row]}
  if prompt is None:
    obs.update(tokens=ex["tokens"][row], token_mask=ex["token_mask"][row])
  else:
    obs["prompt"] = prompt
  return obs


def _model_batch(obs, tokens, token_mask):
  images = np.stack([obs["image"]["primary"], obs["image"]["wrist"]])[None].astype(np.float32) / 127.5 - 1.0
  return {"images": images, "image_mask": np.ones((1, 2), bool), "tokens": tokens.reshape(1, -1),
          "token_mask": token_mask.reshape(1, -1), "state": obs["state"][None]}


def test_checkpoint_loads_and_matches_the_model_sampler(run):
  result, c = run
  fn, info = load_policy(result["run_dir"], prompt="tokens")
  model = train_vla_model = policy_lib.restore_params(result["run_dir"])[0]
  cfg = model.config
  assert info["params"] == "ema_params" and info["step"] == 4
  assert info["action_horizon"] == info["chunk_length"] == cfg.action_horizon
  assert info["action_dim"] == cfg.action_dim and info["control_hz"] == 15.0
  assert info["observation_spec"]["image"]["wrist"] == {"shape": [28, 28, 3], "dtype": "uint8"}
  assert info["observation_spec"]["state"] == {"shape": [cfg.state_dim], "dtype": "float32"}

  sampler = train_lib.make_sampler(train_vla_model, 10, True)
  obs = _observation(cfg)
  key = jax.random.PRNGKey(11)
  chunk = fn(obs, rng=key)
  assert chunk.shape == (cfg.action_horizon, cfg.action_dim) and chunk.dtype == np.float32
  direct = sampler(result["state"].ema_params, _model_batch(obs, obs["tokens"], obs["token_mask"]), key)
  np.testing.assert_allclose(chunk, np.asarray(direct)[0], atol=1e-5, rtol=1e-5)
  # The raw parameters are restored too, and differ from the EMA after 4 steps.
  _, raw, _, meta, which = policy_lib.restore_params(result["run_dir"], use_ema=False)
  assert which == "params" and meta["config"]["model"]["preset"] == "tiny"
  for x, y in zip(jax.tree.leaves(raw), jax.tree.leaves(result["state"].params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert not np.allclose(direct, sampler(raw, _model_batch(obs, obs["tokens"], obs["token_mask"]), key))
  # Successive calls without a key draw fresh noise.
  assert np.abs(fn(obs) - fn(obs)).max() > 1e-4


def test_batched_policy_is_jittable_and_matches_the_sampler(run):
  result, _ = run
  chunk_fn, info = policy_lib.load_batched_policy(result["run_dir"])
  model = policy_lib.restore_params(result["run_dir"])[0]
  cfg = model.config
  rows = [_observation(cfg, row=r) for r in range(2)]
  obs = {"images": {c: np.stack([o["image"][c] for o in rows]) for c in ("primary", "wrist")},
         "state": np.stack([o["state"] for o in rows]),
         "tokens": np.stack([o["tokens"] for o in rows]),
         "token_mask": np.stack([o["token_mask"] for o in rows])}
  key = jax.random.PRNGKey(3)
  chunks = jax.jit(chunk_fn)(obs, key)
  assert chunks.shape == (2, cfg.action_horizon, cfg.action_dim)
  assert info["action_horizon"] == cfg.action_horizon and info["prompt"] == "tokens"
  batch = {"images": np.concatenate([_model_batch(o, o["tokens"], o["token_mask"])["images"]
                                     for o in rows]),
           "image_mask": np.ones((2, 2), bool), "tokens": obs["tokens"],
           "token_mask": obs["token_mask"], "state": obs["state"]}
  direct = train_lib.make_sampler(model, 10, True)(result["state"].ema_params, batch, key)
  np.testing.assert_allclose(np.asarray(chunks), np.asarray(direct), atol=1e-5, rtol=1e-5)
  with pytest.raises(KeyError, match="images/wrist"):
    chunk_fn(dict(obs, images={"primary": obs["images"]["primary"]}), key)
  with pytest.raises(ValueError, match="state has 3 dims"):
    chunk_fn(dict(obs, state=obs["state"][:, :3]), key)


def test_bad_observations_and_options_are_named(run):
  result, _ = run
  fn, _ = load_policy(result["run_dir"], step=2, prompt="tokens")
  obs = _observation(policy_lib.restore_params(result["run_dir"], step=2)[0].config)
  with pytest.raises(KeyError, match="token_mask"):
    fn({k: v for k, v in obs.items() if k != "token_mask"})
  with pytest.raises(ValueError, match="image/wrist.*shape"):
    fn(dict(obs, image=dict(obs["image"], wrist=np.zeros((32, 32, 3), np.uint8))))
  with pytest.raises(ValueError, match="image/primary.*dtype"):
    fn(dict(obs, image=dict(obs["image"], primary=obs["image"]["primary"] / 255.0)))
  with pytest.raises(ValueError, match="prompt="):
    load_policy(result["run_dir"], prompt="audio")
  with pytest.raises(ValueError, match="no normalization statistics"):
    load_policy(result["run_dir"], dataset_name="bridge")
  with pytest.raises(FileNotFoundError, match="step 3"):
    load_policy(result["run_dir"], step=3)


def test_policy_server_serves_the_checkpoint_to_a_websocket_client(run):
  result, c = run
  served = policies.load_policy("vla", path=str(result["run_dir"]), fixed_noise=True, seed=3)
  fn, info = load_policy(result["run_dir"])      # text prompts, the run's (byte) tokenizer
  cfg = policy_lib.restore_params(result["run_dir"])[0].config
  meta = served.metadata()
  assert meta["kind"] == "vla" and meta["params"] == "ema_params" and meta["prompt"] == "text"
  assert meta["control_hz"] == 15.0 and meta["chunk_length"] == cfg.action_horizon
  assert meta["observation_spec"]["prompt"] == {"shape": [], "dtype": "str"}
  assert meta["action_spec"]["actions"]["shape"] == [cfg.action_horizon, cfg.action_dim]
  prompts = ["pick up the red block", "open the drawer"]
  with PolicyServer(served, "127.0.0.1", 0) as server, PolicyClient("127.0.0.1", server.port) as client:
    assert client.metadata["model_id"] == info["model_id"]
    replies = [client.infer(_observation(cfg, prompt=p))["actions"] for p in prompts]
    with pytest.raises(ServerError, match=r"image\.primary"):
      client.infer(dict(_observation(cfg, prompt="x"), image={"primary": np.zeros((28, 28, 3), np.float32)}))
    again = client.infer(_observation(cfg, prompt=prompts[0]))["actions"]   # still serving
  for p, reply in zip(prompts, replies):
    assert reply.shape == (cfg.action_horizon, cfg.action_dim)
    np.testing.assert_allclose(reply, fn(_observation(cfg, prompt=p), rng=jax.random.PRNGKey(3)), atol=1e-5)
  np.testing.assert_array_equal(again, replies[0])           # fixed noise: deterministic
  assert np.abs(replies[0] - replies[1]).max() > 1e-4         # the prompt matters
  # The text path is the byte tokenizer + the model sampler.
  tokens, mask = ByteTokenizer(cfg.vocab_size, cfg.max_token_len)([prompts[1]])
  direct = train_lib.make_sampler(policy_lib.restore_params(result["run_dir"])[0], 10, True)(
      result["state"].ema_params, _model_batch(_observation(cfg, prompt=""), tokens, mask), jax.random.PRNGKey(3))
  np.testing.assert_allclose(replies[1], np.asarray(direct)[0], atol=1e-5)
