"""Training-step cost of the text-conditioned recipes against their label-conditioned twins (issue 12).

A text recipe swaps the class label for a caption: ``TextPrompts`` turns captions into token ids (hashed words), a small
transformer (``TextPrompts.encoder``, trained with the net inside ``ConditionedNetwork``) turns the ids into tokens, and the U-Net
cross-attends to them (``UNet(context_dim=...)``). This measures what that costs, per pair of recipes:

- ``audio_music_cpu`` vs ``audio_music_text_cpu`` (the 2-core CPU presets, batch 16),
- ``video_shapes_cpu`` vs ``video_shapes_text_cpu`` (CPU presets, batch 8),
- ``audio_music`` vs ``audio_music_text`` (the full recipes, batch 32).

The full video recipes are left out: ``video_shapes`` alone takes about 35 s per step on this CPU.

Everything is built from the real recipe configs with Hydra's compose API (the same ``conf/`` folder and recipe
ConfigStore entries as ``mmdiff train``), the same way :func:`mmdiff.cli.run_training` builds them: the dataset, the
conditioner, ``build_network`` (the U-Net, wrapped with the text encoder for a text recipe), the objective
(``DiffusionLoss``) and the AdamW optimizer of ``conf/optim``. Per recipe:

1. **Parameters**: the network's, and the text encoder's separately.
2. **Training step**, as ``mmdiff.train.Trainer`` runs it, on the recipe's first real batch (the synth's clips with
   their real captions, at the recipe's batch size, keyed by ``StreamBatchSampler`` like the trainer):
   ``adapter.encode`` + ``training_conditions`` (conditioner + guidance dropout) + ``DiffusionLoss`` forward +
   backward + gradient clipping (``trainer.grad_clip``) + AdamW step. The EMA update and the data loading are not
   timed. Median seconds per step after warm-up, clips/s, and the text/label ratio.
3. **FLOPs** of one forward + backward (encode included), counted with ``torch.utils.flop_counter.FlopCounterMode``
   plus the CPU attention kernel (``_common.SDPA_CPU_FLOPS``); matmuls, convolutions and attention only.
4. **Generation**: denoising cost per sample with the recipe's sampler and guidance scale, 25 steps, the recipe's
   ``generate.num_samples`` in one batch (guided: one batched pass of 2 x that), default prompts / cycled labels;
   decoding (Griffin-Lim, video frames) is left out, as it is the same for both recipes of a pair.

Networks are freshly initialised (speed does not depend on the weights). 2 torch threads; medians of timed
iterations after warm-up; every timed iteration is listed at the end of the report with the load average. Run it on an
otherwise idle machine (see ``benchmarks/audio.py``: another process on the same cores slows small-tensor nets
erratically).

    python benchmarks/text.py --out benchmarks/results         # full run: 3 pairs, 5 timed steps, 25 sampler steps
    python benchmarks/text.py --out /tmp/bench --quick         # smoke test: CPU pairs, 1 step, 3 sampler steps

Writes ``text.md`` (the table, also printed) to ``--out``.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from _common import SDPA_CPU_FLOPS, begin, bench_parser, compose_recipe, timed, write_report
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import default_collate
from torch.utils.flop_counter import FlopCounterMode

from mmdiff.components import build_model, build_network, generate_defaults, resolve_classes
from mmdiff.conditioners import training_conditions
from mmdiff.conditioners.base import guidance_null
from mmdiff.conditioners.network import ConditionedNetwork
from mmdiff.core import sample
from mmdiff.train.stream import StreamBatchSampler, noise_generators

GEN_STEPS = 25
PAIRS = [  # (what, label recipe, text recipe, full run only)
    ("audio, CPU preset", "audio_music_cpu", "audio_music_text_cpu", False),
    ("video, CPU preset", "video_shapes_cpu", "video_shapes_text_cpu", False),
    ("audio, full recipe", "audio_music", "audio_music_text", True),
]


@dataclass
class Settings:
    warmup: int
    iters: int
    gen_warmup: int
    gen_iters: int
    gen_steps: int
    full_pairs: bool


FULL = Settings(warmup=2, iters=5, gen_warmup=1, gen_iters=2, gen_steps=GEN_STEPS, full_pairs=True)
QUICK = Settings(warmup=0, iters=1, gen_warmup=0, gen_iters=1, gen_steps=3, full_pairs=False)


@dataclass
class Result:
    recipe: str
    batch: int
    net_params: int
    encoder_params: int
    config: str
    results: dict[str, float] = field(default_factory=dict)


def _levels(levels: Any) -> str:
    """A config's level list as written (``null``: the net's attention levels)."""
    return "null (the attention levels)" if levels is None else str(list(levels))


def first_batch(dataset: Any, batch_size: int, seed: int) -> tuple[dict[str, Any], list[int]]:
    """The trainer's first batch: ``StreamBatchSampler`` keys, items collated by the default collate, and the seeds."""
    keys = StreamBatchSampler(len(dataset), batch_size, seed).micro_batch(0)  # [(index, item_seed)] * B
    batch = default_collate([dataset[key] for key in keys])
    return batch, [s for _, s in keys]


def measure(name: str, s: Settings) -> Result:
    """Build recipe ``name`` and time its training step and guided denoising."""
    cfg = compose_recipe(name)
    torch.manual_seed(cfg.trainer.seed)
    dataset = instantiate(cfg.data)
    resolve_classes(cfg, dataset)
    conditioner = instantiate(cfg.conditioner)
    adapter = instantiate(cfg.adapter)
    net = build_network(cfg, conditioner)
    model = build_model(cfg)
    objective = instantiate(cfg.objective, model=model)
    optimizer = instantiate(cfg.optim)(net.parameters())
    grad_clip = float(cfg.trainer.grad_clip or 0.0)
    encoder = net.encoder if isinstance(net, ConditionedNetwork) else None
    unet = net.net if isinstance(net, ConditionedNetwork) else net
    r = Result(
        recipe=name,
        batch=int(cfg.trainer.batch_size),
        net_params=sum(p.numel() for p in unet.parameters()),
        encoder_params=sum(p.numel() for p in encoder.parameters()) if encoder is not None else 0,
        config=f"net: channels={cfg.net.channels}, channel_mult={list(cfg.net.channel_mult)}, "
        f"num_res_blocks={cfg.net.num_res_blocks}, attention_levels={list(cfg.net.attention_levels)}, "
        f"context_dim={cfg.net.context_dim}, num_classes={cfg.num_classes}"
        + (
            f", cross_attention_levels={_levels(cfg.net.get('cross_attention_levels'))}"
            f"; text encoder: dim={cfg.conditioner.dim}, layers={cfg.conditioner.layers}, "
            f"max_length={cfg.conditioner.max_length}, pooled={cfg.conditioner.get('pooled', 'mean')}"
            if encoder is not None
            else ""
        ),
    )
    batch, seeds = first_batch(dataset, r.batch, int(cfg.trainer.seed))
    gens = noise_generators(seeds)  # one noise generator per sample, as the trainer's
    net.train()

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        x0, known = adapter.encode(batch, generator=gens)
        cond = {**training_conditions(conditioner, batch, gens), **known}
        objective(net, x0, generator=gens, **cond).mean().backward()

    def step() -> None:
        forward_backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        optimizer.step()

    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as counter:
        forward_backward()
    seconds = timed(f"{name}: train step (batch {r.batch})", step, s.warmup, s.iters)
    r.results.update(step_s=seconds, clips_per_s=r.batch / seconds, flops=counter.get_total_flops())

    options = generate_defaults(cfg)
    n = options.num_samples
    denoiser = model.denoiser(net)
    cond = conditioner.request(n)
    null = guidance_null(conditioner, n, "cpu", {})
    guided = options.guidance_scale != 1.0 and bool(null)
    shape = (n, *adapter.sample_shape(options.length))

    @torch.no_grad()
    def denoise(steps: int) -> None:
        sample(
            denoiser,
            shape,
            sampler=options.sampler,
            steps=steps,
            seed=options.seeds(),
            schedule=model.schedule,
            spacing=options.spacing,
            cond=cond,
            guidance_scale=options.guidance_scale if guided else 1.0,
            null_cond=null if guided else None,
            **options.sampler_options(),
        )

    net.eval()
    for _ in range(s.gen_warmup):
        denoise(2)
    gen_s = timed(f"{name}: denoising ({n} samples, {s.gen_steps} steps)", lambda: denoise(s.gen_steps), 0, s.gen_iters)
    r.results.update(gen_s=gen_s, gen_per_sample_s=gen_s / n, gen_n=n, guidance=options.guidance_scale)
    print(
        f"{name}: {r.net_params / 1e6:.2f} M net + {r.encoder_params / 1e6:.2f} M encoder params, "
        f"train {seconds:.3f} s/step ({r.results['flops'] / 1e9:.1f} GFLOP), "
        f"generation {gen_s / n:.3f} s/sample",
        flush=True,
    )
    return r


def main() -> None:
    parser = bench_parser(__doc__, "CPU pairs only, 1 timed step, 3 sampler steps")
    args = parser.parse_args()
    s = QUICK if args.quick else FULL
    load_start, start = begin()

    pairs = [(what, label, text) for what, label, text, full in PAIRS if s.full_pairs or not full]
    measured = [(what, measure(label, s), measure(text, s)) for what, label, text in pairs]
    wall = time.perf_counter() - start
    load = f"1-min load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"

    machine = f"{platform.platform(terse=True)}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    mode = f" **--quick: {s.iters} timed step, {s.gen_steps} sampler steps; not representative**" if args.quick else ""
    lines = [
        f"Training-step cost of text conditioning against class labels; {machine}, {torch.get_num_threads()} threads; "
        f"{datetime.date.today()}; wall time {wall:.0f} s; {load}.{mode}",
        "",
        "One training step as the trainer runs it, on the recipe's first real batch (captions included) at the "
        "recipe's batch size: `adapter.encode` + `training_conditions` (conditioner + guidance dropout) + "
        "`DiffusionLoss` forward + backward + gradient clipping + AdamW step (no EMA, no data loading); median of "
        f"{s.iters} steps after the FLOP-counting step and {s.warmup} warm-up. Generation: denoising only (no "
        f"decoding), the recipe's sampler, {s.gen_steps} steps, the recipe's `generate.num_samples` in one batch "
        f"with its guidance scale (one batched pass of 2 x n), median of {s.gen_iters} after {s.gen_warmup} 2-step "
        "warm-up, divided by n.",
        "",
        "| pair | recipe | batch | net params (M) | text encoder params (M) | GFLOP / train step | s / train step "
        "| train clips/s | text / label step time | text / label FLOPs | guidance | gen s / sample "
        "| text / label gen time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for what, label, text in measured:
        for r in (label, text):
            x = r.results
            is_text = r is text
            step_ratio = f"**{x['step_s'] / label.results['step_s']:.2f}x**" if is_text else ""
            flop_ratio = f"{x['flops'] / label.results['flops']:.2f}x" if is_text else ""
            gen_ratio = f"**{x['gen_per_sample_s'] / label.results['gen_per_sample_s']:.2f}x**" if is_text else ""
            lines.append(
                f"| {what} | `{r.recipe}` | {r.batch} | {r.net_params / 1e6:.2f} | "
                f"{r.encoder_params / 1e6:.2f} | {x['flops'] / 1e9:.1f} | {x['step_s']:.3f} | "
                f"{x['clips_per_s']:.1f} | {step_ratio} | {flop_ratio} | {x['guidance']:g} | "
                f"{x['gen_per_sample_s']:.3f} | {gen_ratio} |"
            )
    lines += [
        "",
        "Notes:",
        "- The full video recipes (`video_shapes` vs `video_shapes_text`) are left out: the label one alone takes "
        "about 35 s per training step on this CPU.",
        "- FLOPs are counted by `FlopCounterMode` over one forward + backward including `adapter.encode` (matmul, "
        "convolution, attention; not norms, activations, the STFT/mel front end or the optimizer).",
        "- Label and text recipes of a pair share the data, the adapter, the schedule and the U-Net body; the text one "
        "adds cross-attention (at the U-Net's cross-attention levels) to the tokens of a text transformer trained with it.",
        "- Networks are freshly initialised; speed does not depend on the weights.",
        "",
        "Configurations:",
        *(f"- `{r.recipe}`: {r.config}" for _, label, text in measured for r in (label, text)),
    ]
    write_report(args.out / "text.md", lines, wall)


if __name__ == "__main__":
    main()
