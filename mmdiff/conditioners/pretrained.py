"""A frozen Hugging Face text encoder from a local folder, for :class:`~mmdiff.conditioners.TextPrompts`.

Imported only when ``conditioner.path`` is set, so users of the built-in encoder never import ``transformers``.
Nothing is downloaded (``local_files_only``) and only ``*.safetensors`` weights are read, so a model folder cannot
run code. Supported: encoder-decoder models through their encoder (T5, Flan-T5, mT5, UMT5: ``AutoModelForTextEncoding``),
dual encoders through their text tower (CLIP, CLAP: ``.text_model``), and plain encoders (BERT, RoBERTa ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .text import BagOfTokens, check_pooling, masked_mean


def check_model_folder(path: str | Path) -> Path:
    """``path`` as a folder holding a Hugging Face model (config.json and safetensors weights), else a one-line error."""
    folder = Path(path).expanduser()
    expected = "a local Hugging Face model folder with config.json, tokenizer files and *.safetensors weights"
    if not folder.is_dir():
        raise ValueError(f"conditioner.path: {folder} is not a folder; expected {expected}")
    if not (folder / "config.json").is_file():
        raise ValueError(f"conditioner.path: {folder} has no config.json; expected {expected}")
    if not any(folder.glob("*.safetensors")):
        found = (
            "pickled *.bin weights only (convert them to safetensors)" if any(folder.glob("*.bin")) else "no weights"
        )
        raise ValueError(f"conditioner.path: {folder} has {found}; expected {expected}")
    return folder


def _transformers():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - the dev install has it
        raise ImportError("conditioner.path needs the transformers package: pip install 'mmdiff[text]'") from err
    return transformers


def load_tokenizer(path: str | Path) -> Any:
    folder = check_model_folder(path)
    try:
        return _transformers().AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"conditioner.path: no tokenizer could be read from {folder}: {err}") from err


def load_text_model(path: str | Path) -> nn.Module:
    """The text encoder of the model in ``path``, in eval mode with gradients off."""
    folder = check_model_folder(path)
    tf = _transformers()
    config = tf.AutoConfig.from_pretrained(folder, local_files_only=True)
    kwargs = {"local_files_only": True, "use_safetensors": True}
    from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES as TEXT_ENCODERS

    if config.model_type in TEXT_ENCODERS:  # T5 and kin: the encoder alone, whichever class saved it
        model = tf.AutoModelForTextEncoding.from_pretrained(folder, **kwargs)
    else:
        model = tf.AutoModel.from_pretrained(folder, **kwargs)
        model = getattr(model, "text_model", model)  # CLIP, CLAP: the text tower
    return model.eval().requires_grad_(False)


class PretrainedTextEncoder(nn.Module):
    """A frozen text encoder followed by trainable projections to the network's token width.

    ``(text_ids (B, L), text_mask (B, L))`` -> ``{"context": (B, L, out_dim), "context_mask": (B, L),
    "pooled": (B, out_dim)}``. Token embeddings are the encoder's last hidden states; the pooled embedding is its
    ``pooler_output`` when it has one (CLIP's end token, CLAP's projection input), else the mean over real tokens;
    with ``pooled="bag"`` a trainable bag of the tokenizer's tokens (:class:`~mmdiff.conditioners.text.BagOfTokens`)
    in its place.

    The frozen model is held outside the module tree, so its weights are not in ``state_dict()`` (not checkpointed,
    not averaged, not optimised) and ``.to()`` does not copy it: it follows the input's device when called. The
    embeddings of each distinct caption are cached (on the device, up to ``cache_size`` captions), so an epoch over a
    captioned data set runs the encoder once per caption.
    """

    def __init__(self, path: str | Path, out_dim: int, cache_size: int = 65536, pooled: str = "mean"):
        super().__init__()
        check_pooling(pooled)
        model = load_text_model(path)
        hidden = int(model.config.hidden_size)
        self.__dict__["frozen"] = model  # not a submodule, on purpose (see above)
        self.__dict__["cache"] = {}
        self.cache_size = cache_size
        self.proj = nn.Linear(hidden, out_dim)
        bag = pooled == "bag"  # a row for every id the model takes
        self.bag = BagOfTokens(model.get_input_embeddings().num_embeddings, out_dim) if bag else None
        self.pooled_proj = None if bag else nn.Linear(hidden, out_dim)

    @torch.no_grad()
    def embed(self, text_ids: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Frozen ``(tokens (B, L, hidden), pooled (B, hidden))`` for each caption, from the cache where possible."""
        model, cache = self.frozen, self.cache
        if next(model.parameters()).device != text_ids.device:
            model.to(text_ids.device)
        keys = [row.tobytes() for row in text_ids.cpu().numpy()]
        todo = list({key: i for i, key in enumerate(keys) if key not in cache}.values())  # one row per new caption
        if todo:
            rows = torch.tensor(todo, device=text_ids.device)
            out = model(input_ids=text_ids[rows], attention_mask=text_mask[rows].long())
            tokens = out.last_hidden_state.float()  # (N, L, hidden)
            pooled = getattr(out, "pooler_output", None)
            pooled = pooled.float() if pooled is not None else masked_mean(tokens, text_mask[rows])
            if len(cache) + len(todo) > self.cache_size:
                cache.clear()
            for j, i in enumerate(todo):
                cache[keys[i]] = (tokens[j], pooled[j])
        tokens = torch.stack([cache[key][0] for key in keys])
        pooled = torch.stack([cache[key][1] for key in keys])
        return tokens, pooled

    def forward(self, text_ids: Tensor, text_mask: Tensor) -> dict[str, Tensor]:
        tokens, pooled = self.embed(text_ids, text_mask)
        pooled = self.pooled_proj(pooled) if self.bag is None else self.bag.pool(text_ids, text_mask)
        return {"context": self.proj(tokens), "context_mask": text_mask.bool(), "pooled": pooled}
