"""A weights-only start from a trained run (``trainer.init_from``): fine-tuning on new data or a changed model.

Loads the tensors whose names and shapes match the new network, from the EMA weights of the source checkpoint (a
run directory gives its newest complete checkpoint; a ``.safetensors`` file gives exactly that file, so
``.../model.safetensors`` takes the raw weights). Everything else keeps its fresh initialisation and is reported in
a short table: missing in the checkpoint, a shape mismatch (old -> new), or unexpected (only in the checkpoint).
The optimizer, the step, the data order and the EMA start anew (the EMA from the loaded weights).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..checkpoints import find_checkpoint, load_weights


def load_matching_weights(net: nn.Module, source: str | Path) -> tuple[list[str], list[tuple[str, str]], str]:
    """Load the matching tensors of ``source`` into ``net``.

    Returns ``(loaded names, [(name, why not loaded)], report)``; the report is the table to log."""
    checkpoint = find_checkpoint(source)
    weights = load_weights(checkpoint, ema=True)
    own = net.state_dict()
    matching = {k: v for k, v in weights.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    net.load_state_dict(matching, strict=False)
    skipped = [(k, "missing in checkpoint") for k in own if k not in weights]
    skipped += [
        (k, f"shape mismatch: {tuple(v.shape)} -> {tuple(own[k].shape)}")
        for k, v in weights.items()
        if k in own and k not in matching
    ]
    skipped += [(k, "unexpected: not in this network") for k in weights if k not in own]
    which = "these weights" if checkpoint.is_file() else "its EMA weights"
    lines = [f"init_from {checkpoint} ({which}): loaded {len(matching)} of the network's {len(own)} tensors"]
    if skipped:
        width = max(len("tensor"), *(len(k) for k, _ in skipped))
        lines += [f"  {'tensor':<{width}}  not loaded because", *(f"  {k:<{width}}  {why}" for k, why in skipped)]
    return sorted(matching), skipped, "\n".join(lines)
