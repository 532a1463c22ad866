"""Can the video text preset's network learn a direction at all, and what stops it? (issue 12)

The text presets follow colour and shape words but not directions. This probe takes the question out of the
diffusion trainer: the preset's network (``video_shapes_text_cpu`` with ``net.positions`` and
``net.frame_embedding``) learns to estimate clean clips ``x0`` from ``x0 + sigma * noise`` at one high noise level
(MSE on ``x0``; at that level the best estimate is nearly the mean clip of the condition), conditioned by

- ``label``: a class label, 0 when the caption says "left" (and not "right"), 1 for "right", 2 otherwise;
- ``words``: the same three classes as the captions "moving left", "moving right", "moving", through the built-in
  text encoder;
- ``text``: the clips' own captions through the built-in text encoder.

Every few steps it reports the response: ``RMS(D(x; left) - D(x; right)) / RMS(x0)`` on 64 held-out clips (for text,
the prompts "a red circle moving left" / "... right"), against the ideal, the same quantity for the two conditions'
mean clips; and, for text, how far the two prompts lie apart in the timestep embedding (``emb diff``).

    python benchmarks/direction_probe.py --condition label
    python benchmarks/direction_probe.py --condition words --encoder-lr-scale 0.1
    python benchmarks/direction_probe.py --condition text --pooled bag

Writes nothing; prints its rows. One torch job: run it alone.
"""

from __future__ import annotations

import argparse
import re
import time

import torch
from _common import compose_recipe
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import default_collate

from mmdiff.data import first_items
from mmdiff.nn import UNet

WORDS = {0: "moving left", 1: "moving right", 2: "moving"}
PROMPTS = {"words": WORDS, "text": {0: "a red circle moving left", 1: "a red circle moving right"}}


def direction_class(caption: str) -> int:
    """0: the caption says "left" and not "right"; 1: "right" and not "left"; 2: either both or neither."""
    left, right = re.search(r"\bleft\b", caption), re.search(r"\bright\b", caption)
    return 0 if left and not right else 1 if right and not left else 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--condition", choices=("label", "words", "text"), default="label")
    parser.add_argument("--encoder-lr-scale", type=float, default=1.0, help="0: the encoder stays at its start")
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sigma", type=float, default=15.0)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--items", type=int, default=4096)
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--pooled-norm", type=int, default=1, help="net.pooled_norm (1: true, 0: false)")
    parser.add_argument("--pooled", choices=("mean", "bag"), default="mean", help="conditioner.pooled")
    parser.add_argument("--seed", type=int, default=0, help="the network's start and the training batches")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    overrides = ["net.positions=true", "net.frame_embedding=true", f"conditioner.pooled={args.pooled}"]
    cfg = compose_recipe("video_shapes_text_cpu", overrides)
    conditioner, adapter = instantiate(cfg.conditioner), instantiate(cfg.adapter)
    items = first_items(instantiate(cfg.data), args.items, seed=0)
    classes = torch.tensor([direction_class(item["caption"]) for item in items])
    captions = [item["caption"] for item in items]
    if args.condition == "words":
        captions = [WORDS[int(k)] for k in classes]
    x0, _ = adapter.encode(default_collate([{"video": item["video"]} for item in items]))  # (N, 3, F, H, W)
    n = len(x0)
    scale = x0.pow(2).mean().sqrt()
    ideal = (x0[classes == 0].mean(0) - x0[classes == 1].mean(0)).pow(2).mean().sqrt() / scale

    kwargs = OmegaConf.to_container(cfg.net, resolve=True)
    kwargs.pop("_target_")
    text = args.condition != "label"
    kwargs.update(num_classes=0 if text else 3, pooled_norm=bool(args.pooled_norm))
    if not text:
        kwargs.update(context_dim=0, cross_attention_levels=None)
    net = UNet(**kwargs)
    encoder = conditioner.encoder(net.context_dim) if text else torch.nn.Identity()
    groups = [{"params": list(net.parameters())}]
    if text and args.encoder_lr_scale > 0:
        groups.append({"params": list(encoder.parameters()), "lr": args.lr * args.encoder_lr_scale})
    optimizer = torch.optim.Adam(groups, lr=args.lr)

    def conditions(keys: torch.Tensor | list[str]) -> dict:
        if not text:
            return {"label": keys}
        ids = conditioner.tokenize(keys)
        return encoder(ids["text_ids"], ids["text_mask"])

    def denoise(x: torch.Tensor, keys) -> torch.Tensor:  # x0 estimate from x = x0 + sigma * noise
        level = torch.full((len(x),), args.sigma)  # the net's time input: one constant, as there is one noise level
        return net(x / (args.sigma**2 + 1) ** 0.5, level, **conditions(keys))

    held_out = torch.arange(n - 64, n)
    probe_noise = torch.randn((64, *x0.shape[1:]), generator=torch.Generator().manual_seed(1))

    def response() -> tuple[float, float | None]:
        net.eval()
        with torch.no_grad():
            x = x0[held_out] + args.sigma * probe_noise
            pair = [PROMPTS[args.condition][k] for k in (0, 1)] if text else [torch.full((64,), k) for k in (0, 1)]
            estimates = [denoise(x, [p] * 64 if text else p) for p in pair]
            apart = None
            if text:
                emb = [net.pooled(conditions([p])["pooled"]) for p in pair]
                apart = (emb[0] - emb[1]).norm().item()
        net.train()
        return ((estimates[0] - estimates[1]).pow(2).mean().sqrt() / scale).item(), apart

    print(
        f"condition {args.condition}, pooled {args.pooled}, encoder lr x{args.encoder_lr_scale}, "
        f"sigma {args.sigma}, seed {args.seed}, ideal {ideal:.3f}"
    )
    print("| step | loss | response | emb diff | s |\n|---:|---:|---:|---:|---:|")
    start = time.time()
    for step in range(1, args.steps + 1):
        index = torch.randint(n - 64, (args.batch,))
        x = x0[index] + args.sigma * torch.randn((args.batch, *x0.shape[1:]))
        keys = [captions[i] for i in index.tolist()] if text else classes[index]
        loss = (denoise(x, keys) - x0[index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.every == 0:
            value, apart = response()
            apart_text = f"{apart:.2f}" if apart is not None else ""
            print(
                f"| {step} | {loss.item():.4f} | {value:.3f} | {apart_text} | {time.time() - start:.0f} |", flush=True
            )


if __name__ == "__main__":
    main()
