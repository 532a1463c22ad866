"""Training speed, peak memory and generation time of the video U-Net on this machine, against its peak and diffusers.

How fast the CPU preset (``recipe=video_shapes_cpu``) network trains and generates as clips get longer, larger and
batched, how much memory a training step needs, and whether that speed is good for this hardware. One run measures:

1. **Matmul reference**: FLOP/s of a float32 ``a @ b`` (1024 x 1024), the practical peak of the machine.
2. **Training grid**, our U-Net at the preset size (``UNet(dims=3, in_channels=3, channels=32, channel_mult=(1, 2,
   2), num_res_blocks=1, attention_levels=(1, 2), num_classes=3, down_factor=(1, 2, 2), factorized=True,
   concat_channels=4)``) over frames {8, 16} x resolution {16 x 16, 32 x 32} x batch {4, 8}. One step is
   ``DiffusionLoss(DiffusionModel(vp_cosine(), "v"))(net, x0, label=, concat=)`` forward + backward + an AdamW step, with the
   known-frame condition drawn as in training (``VideoAdapter.known_concat`` of ``known_mask``). We report
   clips/s, the FLOPs of one step (forward + backward) counted with ``torch.utils.flop_counter.FlopCounterMode``, the
   achieved FLOP/s and its fraction of the matmul FLOP/s, and the **peak memory** of a step. The count covers
   matmuls, convolutions and attention (the CPU flash-attention kernel is added to the counter by hand; the temporal
   attention, which has a position bias, runs the math kernel and is counted through its ``bmm``); norms,
   activations, element-wise ops and the optimizer are not counted, so the achieved FLOP/s is a lower bound.
   Configurations whose first step takes more than ~20 s on 2 cores are dropped (and the report says so), as is
   any configuration at least as large on every axis as a dropped one.
3. **Generation** time per clip: 4 clips of 8 frames at 16 x 16 and of 16 frames at 32 x 32, ``mmdiff.core.sample``
   + ``DiffusionModel(vp_cosine(), "v").denoiser(net)``, dpmpp_2m, 25 steps, classifier-free guidance 2 (null label 3, one
   batched pass of 8 = 2B per step). A shape is skipped when its warm-up run predicts more than ~3 minutes.
4. The same training (8 x 16 x 16 and 16 x 32 x 32, batch 4) and generation for diffusers' ``UNet3DConditionModel``
   at about our parameter count (within 5%): block_out_channels (32, 48, 48), one layer per block, cross-attention
   at the two lower levels as our attention, the known-frame condition joined to the input as ours
   (``in_channels=7``). It has no class embedding and requires ``encoder_hidden_states``: it gets a fixed zero
   sequence ``(B, 1, 32)`` and ignores the label, so it trains without classes and its guided generation (same 2B
   batch as ours) only costs what guidance costs.

**Peak memory** is the peak resident set size increase of one training step: every configuration runs in a fresh
process (this script with a hidden ``--one JOB`` option), which builds the network, optimizer and inputs, reads its
RSS, runs one step and reports its maximum RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, monotonic, hence the fresh
process) minus that RSS. It covers activations kept for the backward pass, gradients, AdamW's state (allocated in
that first step) and allocator slack; generation reports the same over its warm-up and timed runs.

Networks are untrained (random weights): speed does not depend on the weights. All timings use 2 threads, follow
warm-up iterations and are medians of several timed iterations; every timed iteration is listed at the end of the
report. Run it on an otherwise idle machine: with another busy process on the same 2 cores, the OpenMP threads of the
two contend and steps slow down erratically, by up to ~30x (seen while writing this: a 0.5 s step took 15 s), and
the ~20 s dropping rule then drops configurations spuriously. The report gives the load average.

    python benchmarks/video.py --out benchmarks/results         # full run (about 10 minutes on 2 idle cores)
    python benchmarks/video.py --out /tmp/bench --quick         # smoke test: one grid point per model, 2 timed
                                                                # iterations, 3 sampler steps (1-2 minutes)

Writes ``video.md`` (the tables, also printed) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import MATMUL_N, SDPA_CPU_FLOPS, TIMINGS, begin, bench_parser, matmul_flops, timed, write_report
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

NUM_CLASSES, NULL_LABEL = 3, 3  # recipes/video_shapes.yaml: num_classes 3; label 3 is the null label
GEN_CLIPS, GEN_STEPS, GUIDANCE = 4, 25, 2.0
WARMUP_STEPS = 2  # sampler steps of a generation warm-up run
CROSS_DIM = 32  # diffusers' cross_attention_dim; its encoder_hidden_states are zeros (B, 1, CROSS_DIM)

Shape = tuple[int, int, int]  # frames, resolution (square), batch
GRID: list[Shape] = [(f, r, b) for f in (8, 16) for r in (16, 32) for b in (4, 8)]
COMPARE: list[Shape] = [(8, 16, 4), (16, 32, 4)]  # training, both models
GENERATE: list[tuple[int, int]] = [(8, 16), (16, 32)]  # frames, resolution; GEN_CLIPS clips
QUICK_POINT: Shape = (8, 16, 4)

OURS_CONFIG = dict(
    dims=3,
    in_channels=3,
    channels=32,
    channel_mult=(1, 2, 2),
    num_res_blocks=1,
    attention_levels=(1, 2),
    num_classes=NUM_CLASSES,
    down_factor=(1, 2, 2),
    factorized=True,
    concat_channels=4,
)
DIFFUSERS_CONFIG = dict(
    in_channels=7,  # 3 RGB + the 4 known-frame channels, joined as ours
    out_channels=3,
    block_out_channels=(32, 48, 48),
    layers_per_block=1,
    down_block_types=("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
    up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"),
    norm_num_groups=16,
    cross_attention_dim=CROSS_DIM,
    attention_head_dim=4,  # diffusers' naming: this is the number of heads (4, as ours)
)
NAMES = {"ours": "mmdiff UNet (3-D, factorised)", "diffusers": "diffusers UNet3DConditionModel"}


@dataclass
class Settings:
    warmup: int
    iters: int
    gen_warmup: int
    gen_iters: int
    gen_steps: int
    matmul_repeats: int
    drop_s: float  # a training configuration whose first step takes longer is dropped
    gen_max_s: float  # a generation shape whose warm-up predicts a longer run is skipped


FULL = Settings(
    warmup=2, iters=5, gen_warmup=1, gen_iters=3, gen_steps=GEN_STEPS, matmul_repeats=20, drop_s=20.0, gen_max_s=180.0
)
# the smoke test runs only the smallest shapes and never drops them (a busy machine would drop them spuriously)
QUICK = Settings(
    warmup=0, iters=2, gen_warmup=1, gen_iters=2, gen_steps=3, matmul_repeats=5, drop_s=math.inf, gen_max_s=math.inf
)


# ---- the networks, each as net(x_t, t, label=, concat=) -------------------------------------------------------------
class Diffusers3D(nn.Module):
    """``UNet3DConditionModel`` as ``net(x_t (B, 3, F, H, W), t, label=, concat=)``: ``concat`` is joined to the
    input as in our U-Net; ``label`` is ignored (it has no class embedding) and ``encoder_hidden_states`` is a fixed
    zero sequence ``(B, 1, CROSS_DIM)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None, concat: Tensor | None = None) -> Tensor:
        if concat is None:
            concat = x.new_zeros(x.shape[0], 4, *x.shape[2:])
        context = x.new_zeros(x.shape[0], 1, CROSS_DIM)
        return self.model(torch.cat([x, concat], dim=1), t, encoder_hidden_states=context).sample


def build(model: str) -> nn.Module:
    torch.manual_seed(0)
    if model == "ours":
        from mmdiff.nn import UNet

        return UNet(**OURS_CONFIG)
    from diffusers import UNet3DConditionModel

    return Diffusers3D(UNet3DConditionModel(**DIFFUSERS_CONFIG))


def config_text(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


# ---- measurements ---------------------------------------------------------------------------------------------------
def rss() -> int:
    """Resident set size of this process now, bytes."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss() -> int:
    """Peak resident set size of this process so far, bytes (Linux reports KiB, macOS bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def label(model: str, frames: int, res: int, batch: int | None = None) -> str:
    size = f"{frames}x{res}x{res}" + (f" B{batch}" if batch else f", {GEN_CLIPS} clips")
    return f"{'mmdiff' if model == 'ours' else 'diffusers'} {size}"


def train_job(model: str, frames: int, res: int, batch: int, s: Settings) -> dict:
    """In a fresh process: peak RSS increase of the first step, then FLOPs and the median step time."""
    from mmdiff.core import DiffusionLoss, DiffusionModel, vp_cosine
    from mmdiff.modalities.video.adapter import VideoAdapter

    net = build(model)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand((batch, 3, frames, res, res), generator=gen) * 2 - 1
    adapter = VideoAdapter(num_frames=frames, resolution=(res, res))
    cond = {
        "label": torch.randint(0, NUM_CLASSES, (batch,), generator=gen),
        "concat": adapter.known_concat(x0, adapter.known_mask(x0, gen)),
    }
    loss_fn = DiffusionLoss(DiffusionModel(vp_cosine(), "v"))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net.train()

    def forward_backward() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net, x0, generator=gen, **cond).mean().backward()

    def step() -> None:
        forward_backward()
        opt.step()

    base, peak_before = rss(), max_rss()
    start = time.perf_counter()
    step()
    first_s = time.perf_counter() - start
    peak = max_rss()
    r = dict(
        params=sum(p.numel() for p in net.parameters()),
        first_s=first_s,
        peak_mib=(peak - base) / 2**20,
        peak_hidden=peak == peak_before,  # the step never exceeded the process's earlier peak
    )
    if first_s > s.drop_s:
        return dict(r, dropped=True)
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as counter:
        forward_backward()
    seconds = timed(f"{label(model, frames, res, batch)}: train step", step, s.warmup, s.iters)
    return dict(r, dropped=False, step_s=seconds, flops=counter.get_total_flops())


def generate_job(model: str, frames: int, res: int, s: Settings) -> dict:
    """In a fresh process: FLOPs of one guided network call, a warm-up run, then the median generation time."""
    from mmdiff.core import DiffusionModel, sample, vp_cosine

    net = build(model).eval()
    schedule = vp_cosine()
    denoiser = DiffusionModel(schedule, "v").denoiser(net)
    labels = torch.arange(GEN_CLIPS) % NUM_CLASSES
    shape = (GEN_CLIPS, 3, frames, res, res)

    def generate(steps: int) -> Tensor:
        return sample(
            denoiser,
            shape,
            "dpmpp_2m",
            steps,
            seed=list(range(GEN_CLIPS)),
            schedule=schedule,
            spacing="trailing",  # as mmdiff.generation's default
            cond={"label": labels},
            guidance_scale=GUIDANCE,
            null_cond={"label": NULL_LABEL},
        )

    base = rss()
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as counter:
        generate(1)  # one network evaluation (a guided batch of 2B)
    start = time.perf_counter()
    for _ in range(s.gen_warmup):
        generate(WARMUP_STEPS)
    predicted = (time.perf_counter() - start) / max(s.gen_warmup, 1) * s.gen_steps / WARMUP_STEPS
    r = dict(nfe_flops=counter.get_total_flops(), predicted_s=predicted)
    if predicted > s.gen_max_s:
        return dict(r, skipped=True, peak_mib=(max_rss() - base) / 2**20)
    seconds = timed(f"{label(model, frames, res)}: generation", lambda: generate(s.gen_steps), 0, s.gen_iters)
    return dict(r, skipped=False, gen_s=seconds, peak_mib=(max_rss() - base) / 2**20)


def run_one(job: dict) -> None:
    """The hidden ``--one JOB`` entry point: one measurement in this (fresh) process, results to ``job['result']``."""
    torch.set_num_threads(2)
    s = QUICK if job["quick"] else FULL
    if job["task"] == "train":
        r = train_job(job["model"], job["frames"], job["res"], job["batch"], s)
    else:
        r = generate_job(job["model"], job["frames"], job["res"], s)
    Path(job["result"]).write_text(json.dumps(dict(r, timings=TIMINGS)))


def spawn(job: dict) -> dict:
    """Run ``job`` in a fresh Python process (its progress lines pass through) and return its results."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        subprocess.run([sys.executable, __file__, "--one", json.dumps(dict(job, result=str(result)))], check=True)
        r = json.loads(result.read_text())
    for key, times in r.pop("timings").items():
        TIMINGS.setdefault(key, []).extend(times)
    return r


def dominated(shape: Shape, dropped: list[Shape]) -> bool:
    return any(all(a >= b for a, b in zip(shape, d)) for d in dropped)


# ---- the report -----------------------------------------------------------------------------------------------------
def mib(r: dict) -> str:
    return ("<= " if r.get("peak_hidden") else "") + f"{r['peak_mib']:.0f}"


def train_cells(r: dict, peak: float) -> str:
    """``GFLOP | step s | clips/s | GFLOP/s | % of matmul | peak MiB`` for one training result."""
    if r["dropped"]:
        return f"dropped (first step {r['first_s']:.1f} s) | | | | | {mib(r)}"
    rate = r["flops"] / r["step_s"]
    return (
        f"{r['flops'] / 1e9:.1f} | {r['step_s']:.3f} | {r['batch'] / r['step_s']:.2f} | {rate / 1e9:.1f} | "
        f"{100 * rate / peak:.0f}% | {mib(r)}"
    )


def main() -> None:
    parser = bench_parser(__doc__, "one grid point per model, 2 timed iterations, 3 steps")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    args = parser.parse_args()
    if args.one:
        run_one(json.loads(args.one))
        return
    s = QUICK if args.quick else FULL
    load_start, start = begin()

    peak = matmul_flops(s)
    print(f"matmul {MATMUL_N}^3 float32: {peak / 1e9:.1f} GFLOP/s", flush=True)

    grid = [QUICK_POINT] if args.quick else sorted(GRID, key=lambda g: g[0] * g[1] ** 2 * g[2])
    compare = [QUICK_POINT] if args.quick else COMPARE
    gen_shapes = GENERATE[:1] if args.quick else GENERATE
    common = dict(quick=args.quick)

    train: dict[tuple[str, Shape], dict] = {}
    dropped: list[Shape] = []
    jobs = [("ours", g) for g in grid] + [("diffusers", g) for g in compare]
    for model, g in jobs:
        frames, res, batch = g
        if model == "ours" and dominated(g, dropped):
            train[model, g] = dict(batch=batch, dropped=True, skipped_as_larger=True)
            print(f"{label(model, *g)}: skipped (at least as large as a dropped configuration)", flush=True)
            continue
        print(f"{label(model, *g)}: training", flush=True)
        r = spawn(dict(common, task="train", model=model, frames=frames, res=res, batch=batch))
        train[model, g] = dict(r, batch=batch)
        if r["dropped"]:
            dropped += [g] if model == "ours" else []
            print(f"  dropped: first step {r['first_s']:.1f} s > {s.drop_s:.0f} s", flush=True)
        else:
            print(
                f"  {r['flops'] / 1e9:.1f} GFLOP, {r['step_s']:.3f} s/step, peak +{r['peak_mib']:.0f} MiB", flush=True
            )

    gen: dict[tuple[str, tuple[int, int]], dict] = {}
    for model in ("ours", "diffusers"):
        for frames, res in gen_shapes:
            print(f"{label(model, frames, res)}: generation", flush=True)
            gen[model, (frames, res)] = spawn(dict(common, task="generate", model=model, frames=frames, res=res))
    wall = time.perf_counter() - start
    load = f"1-min load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"

    import diffusers

    params = {m: next(r["params"] for (mm, _), r in train.items() if mm == m and "params" in r) for m in NAMES}
    machine = (
        f"{platform.platform(terse=True)}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}"
    )
    mode = (
        " **--quick: one grid point per model, 2 timed iterations, 3 sampler steps; not representative**"
        if args.quick
        else ""
    )
    header = "| F x H x W | batch | GFLOP / step | s / step | clips/s | GFLOP/s | % of matmul | peak RSS + (MiB) |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    lines = [
        f"Video U-Net speed and memory, CPU preset (`recipe=video_shapes_cpu`); {machine}, "
        f"{torch.get_num_threads()} threads; {datetime.date.today()}; wall time {wall:.0f} s; {load}.{mode}",
        "",
        f"Matmul reference (float32 {MATMUL_N} x {MATMUL_N} `a @ b`): **{peak / 1e9:.1f} GFLOP/s**.",
        "",
        f"Parameters: {NAMES['ours']} {params['ours'] / 1e6:.2f} M; {NAMES['diffusers']} "
        f"{params['diffusers'] / 1e6:.2f} M ({100 * (params['diffusers'] / params['ours'] - 1):+.0f}%).",
        "",
        f"## Training, {NAMES['ours']}",
        "",
        "`DiffusionLoss(DiffusionModel(vp_cosine(), 'v'))` forward + backward + AdamW on clips of F frames at H x W with class labels "
        f"and the known-frame condition; median of {s.iters} steps after the FLOP-counting step and {s.warmup} "
        "warm-up. Peak RSS +: the increase of the process's peak resident set over its RSS after building the "
        "network, optimizer and inputs, during the first step (a fresh process per row).",
        "",
        header,
        rule,
    ]
    for g in grid:
        r = train["ours", g]
        if r.get("skipped_as_larger"):
            lines.append(f"| {g[0]} x {g[1]} x {g[1]} | {g[2]} | dropped (larger than a dropped one) | | | | | |")
        else:
            lines.append(f"| {g[0]} x {g[1]} x {g[1]} | {g[2]} | {train_cells(r, peak)} |")
    dropped_text = ", ".join(f"{f} x {r} x {r} batch {b}" for f, r, b in grid if train["ours", (f, r, b)]["dropped"])
    lines += [
        "",
        f"Dropped (first step > {s.drop_s:.0f} s, or at least as large on every axis as one that was): "
        f"{dropped_text or 'none'}."
        if not args.quick
        else "--quick: nothing is dropped.",
        "",
        "## Generation",
        "",
        f"{GEN_CLIPS} clips, `mmdiff.core.sample` + `DiffusionModel(vp_cosine(), 'v').denoiser(net)`, dpmpp_2m, {s.gen_steps} "
        f"steps, guidance {GUIDANCE:g} (null label {NULL_LABEL}, one batched pass of {2 * GEN_CLIPS} per step); median "
        f"of {s.gen_iters} after {s.gen_warmup} {WARMUP_STEPS}-step warm-up. GFLOP/s counts {s.gen_steps} network "
        "evaluations of the guided batch.",
        "",
        "| model | F x H x W | s / clip | s / run | GFLOP / evaluation | GFLOP/s | % of matmul | peak RSS + (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, (frames, res)), r in gen.items():
        size = f"{frames} x {res} x {res}"
        if r["skipped"]:
            lines.append(
                f"| {NAMES[model]} | {size} | skipped (predicted {r['predicted_s']:.0f} s per run) | | "
                f"{r['nfe_flops'] / 1e9:.1f} | | | {r['peak_mib']:.0f} |"
            )
            continue
        rate = r["nfe_flops"] * s.gen_steps / r["gen_s"]
        lines.append(
            f"| {NAMES[model]} | {size} | {r['gen_s'] / GEN_CLIPS:.2f} | {r['gen_s']:.2f} | {r['nfe_flops'] / 1e9:.1f} "
            f"| {rate / 1e9:.1f} | {100 * rate / peak:.0f}% | {r['peak_mib']:.0f} |"
        )
    lines += [
        "",
        "## Training, against diffusers",
        "",
        "| model | " + header[2:],
        "|---" + rule,
    ]
    for g in compare:
        for model in NAMES:
            r = train[model, g]
            cells = (
                "dropped (larger than a dropped one) | | | | | " if r.get("skipped_as_larger") else train_cells(r, peak)
            )
            lines.append(f"| {NAMES[model]} | {g[0]} x {g[1]} x {g[1]} | {g[2]} | {cells} |")
    lines += [
        "",
        "Notes:",
        "- FLOPs are counted by `FlopCounterMode` over one forward + backward (matmul, convolution, attention; not "
        "norms, activations or the optimizer), so GFLOP/s and % of matmul are lower bounds of the work done.",
        "- Our U-Net's temporal attention has a relative-position bias, so it runs PyTorch's math attention kernel "
        "(counted through its `bmm`); spatial attention and all of diffusers' attention run the CPU flash kernel "
        "(counted by hand).",
        f"- diffusers UNet3DConditionModel has no class embedding and requires `encoder_hidden_states`: it gets a "
        f"fixed zero sequence (B, 1, {CROSS_DIM}) and ignores the label, so it trains without classes, and its guided "
        f"generation (the same batch of {2 * GEN_CLIPS} per step as ours) only costs what guidance costs. It gets the "
        "same known-frame condition as ours, joined to its input (`in_channels=7`).",
        "- Peak memory is process RSS (activations, gradients, AdamW state, allocator slack), not a tensor count; "
        "'<=' marks a step that stayed under the process's earlier peak.",
        "- Networks are untrained; speed does not depend on the weights.",
        "",
        "Configurations:",
        f"- {NAMES['ours']}: `UNet({config_text(OURS_CONFIG)})` (`recipes/video_shapes_cpu.yaml`)",
        f"- {NAMES['diffusers']}: `UNet3DConditionModel({config_text(DIFFUSERS_CONFIG)})`; called with "
        f"`encoder_hidden_states=zeros(B, 1, {CROSS_DIM})`",
    ]
    write_report(args.out / "video.md", lines, wall)


if __name__ == "__main__":
    main()
