"""Text prompts: captions -> token ids (the conditions) -> a text encoder -> cross-attention tokens for the network.

One conditioner, two encoders, chosen by ``path``:

* ``path: null`` (default): a small transformer trained jointly with the diffusion network, over one of two
  tokenisations that need no vocabulary file (nothing is downloaded): ``tokens: words`` (default) hashes each word
  to one of ``vocab_size`` ids (the hashing trick, Weinberger et al. 2009; CRC-32, stable across processes), so a word
  is one token from the first step and a small model learns "red" or "fast" from a few thousand captions;
  ``tokens: bytes`` reads UTF-8 bytes (as ByT5, Xue et al. 2022): any spelling, but words must be learned from
  letters, which takes far more training (see docs/text.md).
* ``path: /models/flan-t5-base``: a frozen Hugging Face text encoder from a local folder (T5 / Flan-T5, CLIP text,
  CLAP text ...) with its own tokenizer (Imagen, Saharia et al. 2022, and AudioLDM 2 / Stable Audio use frozen T5
  or CLAP encoders this way). Its weights stay out of the run's checkpoints; only a trainable projection is saved.

The conditions the trainer and the samplers see are the token ids and their mask, ``text_ids (B, L)`` and
``text_mask (B, L)``, so classifier-free-guidance dropout, negative prompts and batching work on them like on class
labels. The encoder (:meth:`TextPrompts.encoder`) is a module put in front of the network by
:class:`~mmdiff.conditioners.network.ConditionedNetwork`: trained, averaged (EMA), checkpointed and resumed with it.
"""

from __future__ import annotations

import logging
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import check_request

log = logging.getLogger("mmdiff.conditioners")

PAD, BOS = 0, 1  # token ids start at 2
BYTE_VOCAB = 258  # bytes: byte + 2
WORD = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)  # words (letters and digits) and single punctuation marks
TOKENIZATIONS = ("words", "bytes")
POOLINGS = ("mean", "bag")


def check_pooling(pooled: str, key: str = "pooled") -> None:
    """Refuse a ``pooled`` that is not one of :data:`POOLINGS`, naming ``key``."""
    if pooled not in POOLINGS:
        raise ValueError(f"{key}: expected one of {', '.join(POOLINGS)}, got {pooled!r}")


def word_id(word: str, vocab_size: int) -> int:
    """The id of ``word`` under the hashing trick: ``2 + crc32(utf-8) mod (vocab_size - 2)``."""
    return 2 + zlib.crc32(word.encode("utf-8")) % (vocab_size - 2)


class TextPrompts:
    """Text conditioning from the batch's ``caption`` field and ``prompt=`` requests.

    Args:
        path: a local Hugging Face model folder with a text encoder and its tokenizer (frozen); ``None``: the
            built-in transformer, trained with the model.
        tokens: the built-in encoder's tokenisation, ``words`` (hashed words) or ``bytes`` (UTF-8 bytes).
        vocab_size: hash buckets of ``tokens: words`` (ids ``2 .. vocab_size - 1``; 0 pads, 1 starts).
        max_length: tokens per caption, counting one start token (longer captions are cut).
        dropout: share of training captions replaced by the empty caption (classifier-free guidance).
        prompts: default prompts, cycled when a generation call gives none (the demo samples written during
            training and a bare ``mmdiff sample``).
        lowercase: lower-case captions and prompts first ("Red" and "red" are then one word).
        dim: width of the built-in transformer,
        layers: its layers,
        heads: and its attention heads (unused with ``path``).
        caption_key: the batch field holding the captions.
        lr_scale: the built-in transformer's learning rate as a share of ``optim.lr`` (0: it keeps its random
            start), in an optimizer group of its own. At the network's rate the encoder may make words alike that
            the network cannot use yet (a direction, which needs position and frame features the network learns
            later); docs/text.md has what was measured.
        pooled: the one vector per caption added to the timestep embedding: ``mean`` (default) of the built-in
            encoder's output tokens (a frozen encoder's pooler output where it has one), or ``bag``, a bag of
            tokens (:class:`BagOfTokens`): each word id (the tokenizer's token ids with ``path``) has its own learned
            vector, so that every word reaches the timestep embedding as a label does, whatever the other words
            (not with ``tokens: bytes``, where it would be a bag of letters; docs/text.md).
    """

    request_keys: tuple[str, ...] = ("prompt", "negative_prompt")

    def __init__(
        self,
        path: str | None = None,
        tokens: str = "words",
        vocab_size: int = 8192,
        max_length: int = 64,
        dropout: float = 0.1,
        prompts: Sequence[str] = (),
        lowercase: bool = True,
        dim: int = 256,
        layers: int = 4,
        heads: int = 4,
        caption_key: str = "caption",
        lr_scale: float = 1.0,
        pooled: str = "mean",
    ):
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"conditioner.dropout is a probability in [0, 1], got {dropout}")
        if isinstance(prompts, str):
            prompts = [prompts]
        self.path, self.dropout, self.prompts = path, dropout, [str(p) for p in prompts]
        self.lowercase, self.caption_key = lowercase, caption_key
        self.dim, self.layers, self.heads = dim, layers, heads
        if not lr_scale >= 0.0:
            raise ValueError(f"conditioner.lr_scale: expected a share of optim.lr >= 0, got {lr_scale}")
        self.lr_scale = float(lr_scale)
        if tokens not in TOKENIZATIONS:
            raise ValueError(f"conditioner.tokens: expected one of {', '.join(TOKENIZATIONS)}, got {tokens!r}")
        if tokens == "words" and vocab_size < 3:
            raise ValueError(f"conditioner.vocab_size must be at least 3, got {vocab_size}")
        self.tokens, self.vocab_size = tokens, (int(vocab_size) if tokens == "words" else BYTE_VOCAB)
        check_pooling(pooled, "conditioner.pooled")
        if pooled == "bag" and tokens != "words" and path is None:
            raise ValueError(
                "conditioner.pooled=bag is a bag of words: it needs conditioner.tokens=words or a conditioner.path "
                f"(got tokens={tokens}, which would make it a bag of letters)"
            )
        self.pooled = pooled
        self._words: dict[int, str] = {}  # id -> the last word seen with it (hashes cannot be inverted)
        self.tokenizer = None
        if path is not None:
            from .pretrained import load_tokenizer

            self.tokenizer = load_tokenizer(path)  # checks that path is a model folder first
            max_length = min(max_length, self.tokenizer.model_max_length)
        if max_length < 2:
            raise ValueError(f"conditioner.max_length must be at least 2 tokens, got {max_length}")
        self.max_length = int(max_length)
        self._null = {k: v[0] for k, v in self.tokenize([""]).items()}  # read at every training step: made once

    # ---- captions -> token ids ---------------------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        text = " ".join(str(text).split())
        return text.lower() if self.lowercase else text

    def tokenize(self, texts: Sequence[str], device: Any = "cpu") -> dict[str, Tensor]:
        """Captions -> ``{"text_ids": (B, L) int64, "text_mask": (B, L) bool}`` padded to ``max_length``."""
        texts = [self._clean(t) for t in texts]
        if self.tokenizer is not None:
            out = self.tokenizer(
                texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            ids, mask = out["input_ids"], out["attention_mask"].bool()
        else:
            ids = torch.full((len(texts), self.max_length), PAD, dtype=torch.int64)
            for row, text in enumerate(texts):
                pieces = self._pieces(text)[: self.max_length - 1]
                ids[row, : len(pieces) + 1] = torch.tensor([BOS, *pieces], dtype=torch.int64)
            mask = ids != PAD
        return {"text_ids": ids.to(device), "text_mask": mask.to(device)}

    def _pieces(self, text: str) -> list[int]:
        """One caption's token ids, without the start token."""
        if self.tokens == "bytes":
            return [b + 2 for b in text.encode("utf-8")]
        out = []
        for word in WORD.findall(text):
            out.append(word_id(word, self.vocab_size))
            self._words[out[-1]] = word
        return out

    def detokenize(self, ids: Tensor) -> list[str]:
        """Token ids ``(B, L)`` -> the (cleaned, possibly cut) captions they hold; hashed words are shown as the last
        word this conditioner saw with that id (``?`` for one it never saw)."""
        if self.tokenizer is not None:
            return self.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)
        if self.tokens == "bytes":
            return [bytes(i - 2 for i in row if i >= 2).decode("utf-8", errors="replace") for row in ids.tolist()]
        texts = []
        for row in ids.tolist():
            text = ""
            for i in row:
                if i < 2:
                    continue
                word = self._words.get(i)
                punctuation = word is not None and not word[0].isalnum()
                text += ("" if punctuation or not text else " ") + (word if word is not None else "?")
            texts.append(text)
        return texts

    # ---- the conditioner protocol ------------------------------------------------------------------------------
    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        if self.caption_key not in batch:
            raise ValueError(
                f"the data gives no {self.caption_key!r} field, but the conditioner is text "
                "(the built-in synths caption every clip; a folder reads metadata.csv / metadata.jsonl / .txt files)"
            )
        captions = batch[self.caption_key]
        device = next((v.device for v in batch.values() if torch.is_tensor(v)), "cpu")
        return self.tokenize([captions] if isinstance(captions, str) else list(captions), device)

    def null(self) -> dict[str, Any]:
        """The empty caption, one sample's ``(L,)`` ids and mask."""
        return dict(self._null)

    def _prompts(self, n: int, prompt: str | Sequence[str] | None, name: str) -> list[str]:
        if prompt is None:
            return [self.prompts[i % len(self.prompts)] if self.prompts else "" for i in range(n)]
        values = [prompt] * n if isinstance(prompt, str) else [str(p) for p in prompt]
        if len(values) != n:
            raise ValueError(f"{name}: need one prompt or {n} (one per sample), got {len(values)}")
        return values

    def request(
        self,
        n: int,
        device: Any = "cpu",
        prompt: str | Sequence[str] | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        **request: Any,
    ) -> dict[str, Tensor]:
        """Token ids for ``n`` samples: one prompt for all, one per sample, or none (the default ``prompts``)."""
        check_request(self, request)
        prompts = self._prompts(n, prompt, "prompt")
        self._warn_if_cut(prompts, "prompt")
        return self.tokenize(prompts, device)

    def _warn_if_cut(self, prompts: Sequence[str], name: str) -> None:
        for text in dict.fromkeys(prompts):
            clean = self._clean(text)
            size = (
                len(self.tokenizer(clean)["input_ids"]) if self.tokenizer is not None else len(self._pieces(clean)) + 1
            )
            if size > self.max_length:
                kept = self.detokenize(self.tokenize([text])["text_ids"])[0]
                log.warning("%s cut to %d tokens (conditioner.max_length): %r", name, self.max_length, kept)

    def request_null(
        self,
        n: int,
        device: Any = "cpu",
        prompt: Any = None,
        negative_prompt: str | Sequence[str] | None = None,
        **request: Any,
    ) -> dict[str, Any]:
        """The guidance's other branch: the negative prompt(s) when given (guidance then steers away from them),
        else the empty caption."""
        if negative_prompt is None:
            return self.null()
        negatives = self._prompts(n, negative_prompt, "negative_prompt")
        self._warn_if_cut(negatives, "negative_prompt")
        return self.tokenize(negatives, device)

    def describe(self, cond: Mapping[str, Tensor]) -> list[str]:
        ids = cond.get("text_ids")
        return [] if ids is None else [f'"{text}"' for text in self.detokenize(ids)]

    # ---- the encoder -------------------------------------------------------------------------------------------
    def encoder(self, out_dim: int) -> nn.Module:
        """A fresh text encoder for a network whose cross-attention takes ``out_dim``-wide tokens."""
        if self.path is not None:
            from .pretrained import PretrainedTextEncoder

            return PretrainedTextEncoder(self.path, out_dim, pooled=self.pooled)
        return TextTransformer(
            out_dim,
            self.vocab_size,
            self.dim,
            self.layers,
            self.heads,
            self.max_length,
            lr_scale=self.lr_scale,
            pooled=self.pooled,
        )


class TextTransformer(nn.Module):
    """A small transformer encoder over token ids (hashed words or bytes; pre-norm, learned positions), trained with
    the diffusion network.

    ``(text_ids (B, L), text_mask (B, L))`` -> ``{"context": (B, L, out_dim), "context_mask": (B, L),
    "pooled": (B, out_dim)}``. ``pooled="mean"``: the mean over the caption's real tokens; ``"bag"``: a bag of words
    (:class:`BagOfTokens`, the start token included, so the empty caption has one). ``lr_scale``: its learning rate
    as a share of the network's (the trainer's :func:`~mmdiff.train.trainer.parameter_groups` reads it).
    """

    def __init__(
        self,
        out_dim: int,
        vocab_size: int,
        dim: int = 256,
        layers: int = 4,
        heads: int = 4,
        max_length: int = 64,
        lr_scale: float = 1.0,
        pooled: str = "mean",
    ):
        super().__init__()
        self.lr_scale = lr_scale
        check_pooling(pooled)
        if dim % heads:
            raise ValueError(f"conditioner.dim {dim} does not split into {heads} heads")
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.positions = nn.Parameter(torch.randn(max_length, dim) / math.sqrt(dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim) if out_dim != dim else nn.Identity()
        self.bag = None
        if pooled == "bag":
            self.bag = BagOfTokens(vocab_size, out_dim)

    def forward(self, text_ids: Tensor, text_mask: Tensor) -> dict[str, Tensor]:
        length = text_ids.shape[1]
        h = self.tokens(text_ids.long()) + self.positions[:length]  # (B, L, dim)
        h = self.norm(self.layers(h, src_key_padding_mask=~text_mask.bool()))
        context = self.proj(h)  # (B, L, out_dim)
        if self.bag is None:
            pooled = masked_mean(context, text_mask)
        else:
            pooled = self.bag.pool(text_ids, text_mask)
        return {"context": context, "context_mask": text_mask.bool(), "pooled": pooled}


class BagOfTokens(nn.Embedding):
    """A bag of tokens: ``(ids (B, L), mask (B, L))`` -> ``sum_i table[id_i] / sqrt(n)`` over the ``n`` tokens where
    ``mask`` is True -> ``(B, out_dim)``, from a table of its own (N(0, 1) rows at the start).

    Each word then moves the timestep embedding as a class label does from the first step, rather than through the
    mean of tokens that an encoder mixes, where one word of thirty weighs a thirtieth; the square root keeps the
    pooled vector's scale near one for any caption length. Used with the built-in encoder's hashed words and with a
    frozen encoder's tokenizer ids alike (``conditioner.pooled=bag``; docs/text.md has what it changed).
    """

    def pool(self, ids: Tensor, mask: Tensor) -> Tensor:
        weights = mask.to(self.weight.dtype)[..., None]  # (B, L, 1): pads count for nothing, whatever their id
        count = weights.sum(1).clamp_min(1.0)  # (B, 1)
        return (self(ids.long()) * weights).sum(1) / count.sqrt()  # (B, out_dim)


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``tokens (B, L, D)`` over the positions where ``mask (B, L)`` is True -> ``(B, D)``."""
    weights = mask.to(tokens.dtype)[..., None]  # (B, L, 1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
