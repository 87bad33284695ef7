"""The pi0-style VLA: SigLIP ViT + Gemma language model + action expert, trained by flow matching.

Inputs: a dict in the format of ``vlajax.vla.batch`` (images (B, C, S, S, 3), image_mask, tokens,
token_mask, state; plus actions (B, H, A) and optional action masks for the loss).

Token layout: prefix = C * N image tokens + L text tokens (one bidirectional block, expert 0);
suffix = 1 state token + horizon action tokens (expert 1). ar_mask: prefix False, state True,
first action True, other actions False (see ``vlajax.vla.masks``). Action token k is
``mlp_out(swish(mlp_in([action_in(x_t[k]), sincos(t)])))``; the predicted velocity is
``action_out(expert outputs of the action tokens)``.

Optional co-training text loss: tokens flagged by ``text_target_mask`` (a VQA answer, an instruction
continuation) are causal within the prefix and predicted next-token from the expert-0 outputs, weighted
by ``config.text_loss_weight`` (0 = off; ``compute_losses``).

Use through ``model.apply(params, batch, rng, method=...)`` with the methods ``compute_losses``,
``sample_actions``, ``prefix_logits``; ``init`` goes through ``__call__(batch, rng)``.
``compute_loss(obs, actions, rng, mask)`` is the action-head protocol (``vlajax.policies.base``),
through which ``vlajax.imitation``'s trainer trains the VLA like any head.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlajax.policies import flow_matching as fm
from vlajax.vla import batch as batch_lib
from vlajax.vla import masks
from vlajax.vla import text_loss
from vlajax.vla.config import Pi0Config
from vlajax.vla.gemma import Decoder
from vlajax.vla.vision import VisionEncoder


class Pi0(nn.Module):
  config: Pi0Config
  remat: bool = False

  def setup(self):
    c = self.config
    dtype = c.compute_dtype
    self.vision = VisionEncoder(c.vision, c.llm.width, dtype, remat=self.remat)
    self.decoder = Decoder((c.llm, c.expert), c.vocab_size, dtype, c.rope_max_wavelength, remat=self.remat)
    dense = lambda features: nn.Dense(features, dtype=dtype)
    self.state_proj = dense(c.expert.width)
    self.action_in_proj = dense(c.expert.width)
    self.action_time_mlp_in = dense(c.expert.width)
    self.action_time_mlp_out = dense(c.expert.width)
    self.action_out_proj = nn.Dense(c.action_dim, dtype=jnp.float32)

  # ---- token embedding ------------------------------------------------------------------------

  def embed_prefix(self, obs):
    """Returns prefix tokens (B, P, D_llm), input mask (B, P) and ar_mask (B, P).

    The ar_mask is False (one bidirectional block of images + prompt) except on text-target tokens
    (``obs["text_target_mask"]``, e.g. a VQA answer), which are causal, as in a prefix-LM.
    """
    images, image_mask = obs["images"], obs["image_mask"]
    b, cams = images.shape[:2]
    feats = self.vision(images.reshape((b * cams,) + images.shape[2:]))  # (B*C, N, D)
    n = feats.shape[1]
    feats = feats.reshape(b, cams * n, -1)
    img_mask = jnp.repeat(image_mask.astype(bool), n, axis=1)
    text = self.decoder.embed(obs["tokens"])
    tokens = jnp.concatenate([feats.astype(text.dtype), text], axis=1)
    input_mask = jnp.concatenate([img_mask, obs["token_mask"].astype(bool)], axis=1)
    targets = obs.get("text_target_mask")
    targets = jnp.zeros(obs["token_mask"].shape, bool) if targets is None else jnp.asarray(targets, bool)
    ar_mask = jnp.concatenate([jnp.zeros(img_mask.shape, bool), targets], axis=1)
    return tokens, input_mask, ar_mask

  def embed_suffix(self, state, x_t, t):
    """State token + action tokens: (B, 1 + H, D_exp), input mask (B, 1 + H), ar_mask (1 + H,)."""
    c = self.config
    dtype = c.compute_dtype
    state_tok = self.state_proj(state.astype(dtype))[:, None, :]
    action_tok = self.action_in_proj(x_t.astype(dtype))
    time_emb = fm.sincos_time_embedding(t, c.expert.width, c.time_min_period, c.time_max_period)
    time_emb = jnp.broadcast_to(time_emb[:, None, :].astype(dtype), action_tok.shape)
    h = self.action_time_mlp_in(jnp.concatenate([action_tok, time_emb], axis=-1))
    action_tok = self.action_time_mlp_out(nn.swish(h))
    tokens = jnp.concatenate([state_tok, action_tok], axis=1)
    input_mask = jnp.ones(tokens.shape[:2], bool)
    ar_mask = jnp.array([True, True] + [False] * (c.action_horizon - 1))
    return tokens, input_mask, ar_mask

  # ---- forward passes -------------------------------------------------------------------------

  def forward(self, obs, x_t, t):
    """Prefix and suffix together (no cache): (expert-0 prefix outputs (B, P, D_llm), v (B, H, A) f32)."""
    prefix, prefix_mask, prefix_ar = self.embed_prefix(obs)
    suffix, suffix_mask, suffix_ar = self.embed_suffix(obs["state"], x_t, t)
    input_mask = jnp.concatenate([prefix_mask, suffix_mask], axis=1)
    ar_mask = jnp.concatenate([prefix_ar, jnp.broadcast_to(suffix_ar, suffix_mask.shape)], axis=1)
    mask = masks.make_attention_mask(input_mask, ar_mask)
    positions = masks.positions_from_mask(input_mask)
    (prefix_out, out), _ = self.decoder([prefix, suffix], positions, mask)
    return prefix_out, self.action_out_proj(out[:, -self.config.action_horizon:])

  def velocity_full(self, obs, x_t, t):
    """v(x_t, t) running prefix and suffix together (no cache). (B, H, A) float32."""
    return self.forward(obs, x_t, t)[1]

  def prefix_cache(self, obs):
    """Runs the prefix once: returns (stacked KV cache, prefix input mask (B, P))."""
    prefix, prefix_mask, prefix_ar = self.embed_prefix(obs)
    mask = masks.make_attention_mask(prefix_mask, prefix_ar)
    positions = masks.positions_from_mask(prefix_mask)
    _, cache = self.decoder([prefix, None], positions, mask)
    return cache, prefix_mask

  def velocity_cached(self, cache, prefix_mask, state, x_t, t):
    """v(x_t, t) running only the suffix against the prefix KV cache. (B, H, A) float32."""
    suffix, suffix_mask, suffix_ar = self.embed_suffix(state, x_t, t)
    mask = masks.suffix_attention_mask(prefix_mask, suffix_mask, suffix_ar)
    positions = masks.positions_from_mask(suffix_mask, offset=jnp.sum(prefix_mask, axis=1))
    (_, out), _ = self.decoder([None, suffix], positions, mask, kv_cache=cache)
    return self.action_out_proj(out[:, -self.config.action_horizon:])

  # ---- public methods -------------------------------------------------------------------------

  def compute_losses(self, batch, rng):
    """All training losses from one forward pass.

    Returns a dict: ``loss`` (scalar: action loss + ``text_loss_weight`` * text loss),
    ``action_loss`` (masked flow-matching MSE), ``per_example`` ((B,) action loss), and, when
    ``config.text_loss_weight > 0``, ``text_loss`` (next-token cross-entropy on the prefix's text
    targets, ``batch["text_target_mask"]``; see ``vlajax.vla.text_loss``).
    """
    actions = batch["actions"].astype(jnp.float32)
    noise_rng, time_rng = jax.random.split(rng)      # the draws of ``fm.flow_matching_loss``
    noise = jax.random.normal(noise_rng, actions.shape, jnp.float32)
    t = fm.sample_time(time_rng, actions.shape[0])
    prefix_out, velocity = self.forward(batch, fm.interpolate(actions, noise, t), t)
    action_loss, per_example = fm.masked_mse(velocity, fm.target_velocity(actions, noise),
                                             batch_lib.loss_mask(batch))
    out = {"loss": action_loss, "action_loss": action_loss, "per_example": per_example}
    weight = self.config.text_loss_weight
    if weight > 0:
      if "text_target_mask" not in batch:
        raise KeyError("text_loss_weight > 0 needs the batch field 'text_target_mask' (B, L); "
                       f"the batch has {sorted(batch)}")
      text_out = prefix_out[:, prefix_out.shape[1] - batch["tokens"].shape[1]:]
      labels, weights = text_loss.next_token_targets(batch["tokens"], batch["text_target_mask"],
                                                     batch["token_mask"])
      out["text_loss"] = text_loss.masked_cross_entropy(self.decoder.logits(text_out[:, :-1]), labels, weights)
      out["loss"] = action_loss + weight * out["text_loss"]
    return out

  def compute_loss(self, obs, actions, rng, mask=None):
    """The action-head protocol (`vlajax.policies.base`), so `vlajax.imitation` trains the VLA
    like any head: `obs` the model batch's observation fields, `actions` (B, H, A), `mask`
    broadcastable to (B, H, A) (the batch's `action_mask`). Returns (scalar training loss,
    per-example (B,) action loss)."""
    batch = dict(obs, actions=actions)
    if mask is not None:
      batch["action_mask"] = mask
    losses = self.compute_losses(batch, rng)
    return losses["loss"], losses["per_example"]

  def __call__(self, batch, rng):
    """(scalar training loss, per-example action loss) of a whole model batch (`init` uses it)."""
    losses = self.compute_losses(batch, rng)
    return losses["loss"], losses["per_example"]

  def sample_actions(self, obs, rng, num_steps: int = 10, use_kv_cache: bool = True, noise=None):
    """Euler-integrates from noise (t=1) to actions (t=0). Returns (B, H, A) float32.

    With ``use_kv_cache`` the prefix runs once and every step runs only the suffix; without it
    every step recomputes the whole sequence (the reference the cache is tested against).
    """
    c = self.config
    b = obs["state"].shape[0]
    if noise is None:
      noise = jax.random.normal(rng, (b, c.action_horizon, c.action_dim), jnp.float32)
    if use_kv_cache:
      cache, prefix_mask = self.prefix_cache(obs)
      velocity = lambda x_t, t: self.velocity_cached(cache, prefix_mask, obs["state"], x_t, t)
    else:
      velocity = lambda x_t, t: self.velocity_full(obs, x_t, t)
    return fm.euler_sample(velocity, noise, num_steps)

  def prefix_logits(self, obs):
    """Language-model logits over the prefix (images + text), (B, P, V): the PaliGemma path."""
    prefix, prefix_mask, prefix_ar = self.embed_prefix(obs)
    mask = masks.make_attention_mask(prefix_mask, prefix_ar)
    positions = masks.positions_from_mask(prefix_mask)
    (out, _), _ = self.decoder([prefix, None], positions, mask)
    return self.decoder.logits(out)
