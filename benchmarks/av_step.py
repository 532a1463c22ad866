"""The joint audio-video training step against the two single-modality steps added together (issue 16).

What does coupling the streams cost? The recipe's :class:`~mmdiff.nn.JointUNet` is built exactly as ``mmdiff train
recipe=NAME`` builds it; its two streams, copied out as standalone U-Nets with the same weights and the same
known-part inputs, are the single-modality models: the video U-Net over the clip's frames and the audio U-Net over its
log-mels. One step is, for each model, the recipe's loss (``DiffusionLoss`` with its schedule, parameterisation,
weighting and noise levels) forward and backward plus an AdamW step, on the same batch of the recipe's data, encoded
by the recipe's adapter (known parts drawn as in training). The joint model's step is reported against the sum of the
two single steps: the rest is the cross-modal attention and the packing of the two tracks into one clip.

All timings use 2 threads, follow warm-up steps and are medians of several timed steps, the three models
interleaved so that a slow spell of the machine hits them alike. Run it on an otherwise idle machine.

    python benchmarks/av_step.py [--recipe av_shapes_cpu] [--batch N] [--out benchmarks/results] [--quick]

Writes ``av_step.md`` (the table, also printed) to ``--out``.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from _common import begin, bench_parser, compose_recipe
from hydra.utils import instantiate
from torch.utils.data import default_collate

from mmdiff.components import build_model, build_network, resolve_classes


def step_fn(net: torch.nn.Module, objective: Any, x0: torch.Tensor, cond: dict[str, Any]):
    """One training step of ``net`` on ``x0``: loss forward + backward + AdamW."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def run() -> None:
        loss = objective(net, x0, generator=generator, **cond).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def main() -> None:
    parser = bench_parser(__doc__, "2 warm-up and 3 timed steps")
    parser.add_argument("--recipe", default="av_shapes_cpu")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the recipe's)")
    args = parser.parse_args()
    load, _ = begin()
    warmup, iters = (1, 3) if args.quick else (3, 10)

    cfg = compose_recipe(args.recipe, [f"trainer.batch_size={args.batch}"] if args.batch else [])
    torch.manual_seed(0)
    dataset = instantiate(cfg.data)
    resolve_classes(cfg, dataset)
    adapter, conditioner = instantiate(cfg.adapter), instantiate(cfg.conditioner)
    joint = build_network(cfg, conditioner)
    objective = instantiate(cfg.objective, model=build_model(cfg))
    batch_size = int(cfg.trainer.batch_size)
    batch = default_collate([dataset[i] for i in range(batch_size)])
    label = batch.get("label")
    x0, known = adapter.encode(batch, generator=torch.Generator().manual_seed(0))  # (B, N), {"concat": (B, M)}
    frames = adapter.frames_of(x0.shape[1])
    tracks = adapter.packing(frames).unpack(x0)  # video (B, C, F, H, W), audio (B, mels, rF)
    known_tracks = joint.packing(frames, concat=True).unpack(known["concat"])
    cond = {"label": label} if label is not None and cfg.num_classes else {}
    models = {
        "joint (coupled streams)": (joint, x0, {**cond, **known}),
        "video U-Net alone": (copy.deepcopy(joint.video), tracks["video"], {**cond, "concat": known_tracks["video"]}),
        "audio U-Net alone": (copy.deepcopy(joint.audio), tracks["audio"], {**cond, "concat": known_tracks["audio"]}),
    }
    runs = {name: step_fn(net, objective, x, c) for name, (net, x, c) in models.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + iters):  # interleaved: a slow spell of the machine hits every model alike
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    params = {name: sum(p.numel() for p in net.parameters()) for name, (net, _, _) in models.items()}
    single = median["video U-Net alone"] + median["audio U-Net alone"]
    coupling = params["joint (coupled streams)"] - params["video U-Net alone"] - params["audio U-Net alone"]

    lines = [
        f"# Joint audio-video training step against the single-modality steps ({args.recipe})",
        "",
        f"`python benchmarks/av_step.py --recipe {args.recipe}"
        + (f" --batch {args.batch}" if args.batch else "")
        + (" --quick" if args.quick else "")
        + f"`: batch {batch_size}, {frames} frames, {torch.get_num_threads()} threads, median of {iters} steps after "
        f"{warmup} warm-up; load average {load:.2f} at the start. Each step: the recipe's loss forward + backward "
        "and an AdamW step on the same batch (see the script's docstring).",
        "",
        "| model | parameters | s/step | clips/s |",
        "|---|---|---|---|",
    ]
    for name in runs:
        lines.append(f"| {name} | {params[name]:,} | {median[name]:.3f} | {batch_size / median[name]:.1f} |")
    lines += [
        f"| video + audio alone, added | {params['video U-Net alone'] + params['audio U-Net alone']:,} | "
        f"{single:.3f} | {batch_size / single:.1f} |",
        "",
        f"The joint step takes **{median['joint (coupled streams)'] / single:.2f}x** the two single-modality steps "
        f"added together; the couplings add {coupling:,} parameters "
        f"({coupling / params['joint (coupled streams)']:.1%} of the joint net).",
        "",
        "Every timed step (s): "
        + "; ".join(f"{name}: " + " ".join(f"{t:.3f}" for t in ts) for name, ts in times.items()),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.recipe == "av_shapes_cpu" and not args.batch else f"_{args.recipe}_b{batch_size}"
    (args.out / f"av_step{suffix}.md").write_text(report)


if __name__ == "__main__":
    main()
