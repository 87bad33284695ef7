"""Instruction tokenizer: a HuggingFace tokenizer loaded from local files only (never downloads).

PaliGemma prompts are ``<bos> + text + "\\n"``; ``tokenize`` pads / truncates to a fixed length and
returns ``(tokens int32 (B, L), mask bool (B, L))`` as the model batch expects.
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np


class Tokenizer:
  """Wraps a ``transformers`` tokenizer; ``__call__(texts) -> (tokens, mask)``."""

  def __init__(self, hf_tokenizer, max_len: int, add_newline: bool = True):
    self.hf = hf_tokenizer
    self.max_len = max_len
    self.add_newline = add_newline

  @property
  def pad_id(self) -> int:
    pad = self.hf.pad_token_id
    return 0 if pad is None else int(pad)

  def encode(self, text: str) -> list[int]:
    text = text.strip().replace("_", " ")
    if self.add_newline:
      text += "\n"
    ids = self.hf.encode(text, add_special_tokens=False)
    bos = self.hf.bos_token_id
    return ([bos] if bos is not None else []) + list(ids)

  def encode_target(self, text: str) -> list[int]:
    """A text target (answer) follows the prompt and ends with <eos>."""
    eos = self.hf.eos_token_id
    return list(self.hf.encode(text.strip(), add_special_tokens=False)) + ([eos] if eos is not None else [])

  def with_targets(self, prompts: Sequence[str], targets: Sequence[str]):
    return tokenize_with_targets(self, prompts, targets)

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.full((len(texts), self.max_len), self.pad_id, np.int32)
    mask = np.zeros((len(texts), self.max_len), bool)
    for row, text in enumerate(texts):
      ids = self.encode(text)[:self.max_len]
      tokens[row, :len(ids)] = ids
      mask[row, :len(ids)] = True
    return tokens, mask


def load_tokenizer(path: str | pathlib.Path, max_len: int, add_newline: bool = True) -> Tokenizer:
  """Loads the tokenizer saved under ``path`` (``tokenizer.json`` / ``tokenizer.model`` + configs).

  Raises FileNotFoundError when ``path`` is not a directory, ImportError when transformers is absent.
  """
  path = pathlib.Path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"tokenizer directory {path} does not exist (tokenizers are loaded from local files only)")
  try:
    from transformers import AutoTokenizer  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("loading a tokenizer needs `transformers` (pip install -e .[dev])") from e
  hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
  return Tokenizer(hf, max_len, add_newline)


class ByteTokenizer:
  """Fallback when no HF tokenizer directory is given: ``<bos>=1`` then UTF-8 bytes mapped into
  ``[3, vocab_size)`` (folded modulo when the vocabulary is smaller than 259). Pad id 0."""

  def __init__(self, vocab_size: int, max_len: int):
    if vocab_size < 4:
      raise ValueError(f"ByteTokenizer needs vocab_size >= 4, got {vocab_size}")
    self.vocab_size = vocab_size
    self.max_len = max_len

  pad_id = 0

  def _bytes(self, text: str) -> list[int]:
    return [3 + b % (self.vocab_size - 3) for b in text.encode()]

  def encode(self, text: str) -> list[int]:
    return [1] + self._bytes(text.strip() + "\n")

  def encode_target(self, text: str) -> list[int]:
    """A text target (answer): its bytes then <eos>=2."""
    return self._bytes(text.strip()) + [2]

  def with_targets(self, prompts: Sequence[str], targets: Sequence[str]):
    return tokenize_with_targets(self, prompts, targets)

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.zeros((len(texts), self.max_len), np.int32)
    mask = np.zeros((len(texts), self.max_len), bool)
    for row, text in enumerate(texts):
      ids = self.encode(text)[:self.max_len]
      tokens[row, :len(ids)] = ids
      mask[row, :len(ids)] = True
    return tokens, mask


def tokenize_with_targets(tokenizer, prompts: Sequence[str], targets: Sequence[str]):
  """Prompt followed by its text target (e.g. a VQA answer), padded / truncated to ``max_len``.

  Returns (tokens int32 (B, L), token_mask bool (B, L), target_mask bool (B, L)); ``target_mask``
  marks the target's tokens (none where the target is empty).
  """
  if len(prompts) != len(targets):
    raise ValueError(f"{len(prompts)} prompts but {len(targets)} text targets")
  n, length = len(prompts), tokenizer.max_len
  tokens = np.full((n, length), tokenizer.pad_id, np.int32)
  mask = np.zeros((n, length), bool)
  target_mask = np.zeros((n, length), bool)
  for row, (prompt, target) in enumerate(zip(prompts, targets)):
    ids = tokenizer.encode(prompt)
    target_ids = tokenizer.encode_target(target) if target else []
    seq = (ids + target_ids)[:length]
    tokens[row, :len(seq)] = seq
    mask[row, :len(seq)] = True
    target_mask[row, len(ids):len(seq)] = True
  return tokens, mask, target_mask
