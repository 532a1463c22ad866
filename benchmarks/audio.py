"""Training and generation speed of the audio U-Net on this machine, against the machine's peak and diffusers U-Nets.

How fast the CPU preset (``recipe=audio_music_cpu``) trains and generates, and whether that speed is good for this
hardware. One run measures:

1. **Matmul reference**: FLOP/s of a float32 ``a @ b`` (1024 x 1024), the practical peak of the machine.
2. **Training**, at the preset size on the real input (16 clips of 2 s = log-mel ``(16, 128, 120)``): one step is
   ``DiffusionLoss(DiffusionModel(vp_cosine(), "v"))`` forward + backward + an AdamW step. We report clips/s (clips are 2 s, so
   twice that is seconds of audio trained per second), the FLOPs of one step (forward + backward) counted with
   ``torch.utils.flop_counter.FlopCounterMode``, the achieved FLOP/s and its fraction of the matmul FLOP/s. The
   count covers matmuls, convolutions and attention (the CPU SDPA kernel is added to the counter by hand); norms,
   activations, element-wise ops and the optimizer are not counted, so the achieved FLOP/s is a lower bound.
3. The same for two diffusers networks of about our size (within ~10% of its parameters):
   ``UNet1DModel`` on the same ``(16, 128, 120)`` input (Dance-Diffusion blocks, time given as 16 Fourier channels
   concatenated to the input; it has no class conditioning, so it trains unconditionally) and ``UNet2DModel`` on
   the log-mel as a 1-channel image ``(16, 1, 128, 120)``, class-conditional through ``num_class_embeds``. All go
   through the same loss wrapper, ``DiffusionLoss(DiffusionModel(...))(net, x0, **cond)``, with a thin module adapting each call.
4. **Generation**: seconds of audio per second of compute for 8 clips of 2 s with ``mmdiff.core.sample`` +
   ``NetworkDenoiser``, dpmpp_2m, 25 steps, classifier-free guidance 2 (null label 4, one batched pass of 16),
   split into the denoising part and the Griffin-Lim vocoder (``LogMelAdapter().mel_to_waveform``, 32 iterations).
   ``UNet2DModel`` is timed the same way (guided, it has class embeddings); ``UNet1DModel`` unguided (batch 8).

Networks are untrained (random weights): speed does not depend on the weights. All timings use 2 threads, follow
warm-up iterations (for generation, a short 2-step run) and are medians of several timed iterations; every timed
iteration is listed at the end of the report. Run it on an otherwise idle machine: with another process on the same
cores, the small-tensor networks (both 1-D U-Nets) slow down erratically by up to ~20x (OpenMP threads of two
processes contending), while the large-tensor UNet2DModel barely changes. The report gives the load average.

    python benchmarks/audio.py --out benchmarks/results         # full run (about 5-10 minutes on 2 idle cores)
    python benchmarks/audio.py --out /tmp/bench --quick         # smoke test: 2 timed iterations, 3 sampler steps

Writes ``audio.md`` (the table, also printed) to ``--out``.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import dataclass, field

import torch
from _common import MATMUL_N, SDPA_CPU_FLOPS, begin, bench_parser, matmul_flops, timed, write_report
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mmdiff.core import DiffusionLoss, DiffusionModel, sample, vp_cosine
from mmdiff.modalities.audio import LogMelAdapter
from mmdiff.nn import UNet

BATCH, N_MELS, FRAMES = 16, 128, 120  # recipes/audio_music_cpu.yaml: 16 kHz, hop 256, 2 s clips -> 120 frames
CLIP_SECONDS = 2.0  # nominal clip length (120 frames x 256 / 16000 = 1.92 s of spectrogram)
NUM_CLASSES, NULL_LABEL = 4, 4
GEN_CLIPS, GEN_STEPS, GUIDANCE = 8, 25, 2.0
WARMUP_STEPS = 2  # sampler steps of a generation warm-up run


@dataclass
class Settings:
    warmup: int
    iters: int
    gen_warmup: int
    gen_iters: int
    gen_steps: int
    matmul_repeats: int


FULL = Settings(warmup=2, iters=5, gen_warmup=1, gen_iters=3, gen_steps=GEN_STEPS, matmul_repeats=20)
QUICK = Settings(warmup=0, iters=2, gen_warmup=1, gen_iters=2, gen_steps=3, matmul_repeats=5)


# ---- the networks, each adapted to net(x_t, t, **cond) -------------------------------------------------------------
class Diffusers1D(nn.Module):
    """``UNet1DModel`` as ``net(x_t, t)``: its Fourier time features expect t in [0, 1], so the DDPM index is scaled."""

    def __init__(self, model: nn.Module, num_timesteps: int):
        super().__init__()
        self.model, self.num_timesteps = model, num_timesteps

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.model(x, t / self.num_timesteps).sample


class Diffusers2D(nn.Module):
    """``UNet2DModel`` as ``net(x_t (B, 1, mels, frames), t, label=)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor, label: Tensor) -> Tensor:
        return self.model(x, t, class_labels=label).sample


@dataclass
class Candidate:
    name: str
    net: nn.Module
    shape: tuple[int, ...]  # one clip as the network sees it
    conditional: bool  # takes label=
    guided: bool  # generation with classifier-free guidance
    config: str
    results: dict[str, float] = field(default_factory=dict)


def candidates(num_timesteps: int) -> list[Candidate]:
    from diffusers import UNet1DModel, UNet2DModel

    torch.manual_seed(0)
    ours = UNet(
        dims=1,
        in_channels=N_MELS,
        channels=48,
        channel_mult=(1, 2, 4),
        num_res_blocks=1,
        attention_levels=(2,),
        num_classes=NUM_CLASSES,
    )
    d1 = UNet1DModel(
        sample_size=FRAMES,
        in_channels=N_MELS,
        out_channels=N_MELS,
        extra_in_channels=16,  # = the Fourier time features concatenated to the input
        time_embedding_type="fourier",
        time_embedding_dim=16,
        use_timestep_embedding=False,
        down_block_types=("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"),
        up_block_types=("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"),
        mid_block_type="UNetMidBlock1D",
        block_out_channels=(64, 64, 128),
    )
    d2 = UNet2DModel(
        sample_size=(N_MELS, FRAMES),
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64, 128),  # 128 x 120 -> 64 x 60 -> 32 x 30 -> 16 x 15
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        num_class_embeds=NUM_CLASSES + 1,  # + the null label
    )
    return [
        Candidate(
            "mmdiff UNet (1-D)",
            ours,
            (N_MELS, FRAMES),
            conditional=True,
            guided=True,
            config="dims=1, in_channels=128, channels=48, channel_mult=(1, 2, 4), num_res_blocks=1, "
            "attention_levels=(2,), num_classes=4",
        ),
        Candidate(
            "diffusers UNet1DModel",
            Diffusers1D(d1, num_timesteps),
            (N_MELS, FRAMES),
            conditional=False,
            guided=False,
            config="in/out_channels=128, block_out_channels=(64, 64, 128), DownBlock1DNoSkip/DownBlock1D/"
            "AttnDownBlock1D + UNetMidBlock1D + AttnUpBlock1D/UpBlock1D/UpBlock1DNoSkip, time_embedding_type="
            "fourier, time_embedding_dim=16, extra_in_channels=16, use_timestep_embedding=False; unconditional",
        ),
        Candidate(
            "diffusers UNet2DModel",
            Diffusers2D(d2),
            (1, N_MELS, FRAMES),
            conditional=True,
            guided=True,
            config="in/out_channels=1 on (1, 128, 120), block_out_channels=(32, 64, 64, 128), layers_per_block=1, "
            "attention at the 16 x 15 level only (AttnDownBlock2D/AttnUpBlock2D), num_class_embeds=5",
        ),
    ]


# ---- measurements ---------------------------------------------------------------------------------------------------
def resample_flops(counter: FlopCounterMode, net: nn.Module) -> int:
    """FLOPs spent in diffusers' ``Downsample1d``/``Upsample1d`` (dense C x C x 8 kernels, only the diagonal set)."""
    counts = counter.get_flop_counts()
    names = [
        f"{type(net).__name__}.{n}"
        for n, m in net.named_modules()
        if type(m).__name__ in ("Downsample1d", "Upsample1d")
    ]
    return sum(sum(counts.get(n, {}).values()) for n in names)


def train_benchmark(c: Candidate, schedule, s: Settings) -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn((BATCH, *c.shape), generator=gen) * 0.5
    cond = {"label": torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen)} if c.conditional else {}
    loss_fn = DiffusionLoss(DiffusionModel(schedule, "v"))
    opt = torch.optim.AdamW(c.net.parameters(), lr=1e-4)
    c.net.train()

    def forward_backward() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(c.net, x0, generator=gen, **cond).mean().backward()

    def step() -> None:
        forward_backward()
        opt.step()

    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as counter:
        forward_backward()
    seconds = timed(f"{c.name}: train step", step, s.warmup, s.iters)
    c.results.update(
        step_s=seconds,
        flops=counter.get_total_flops(),
        resample_flops=resample_flops(counter, c.net),
        clips_per_s=BATCH / seconds,
        flops_per_s=counter.get_total_flops() / seconds,
    )


def generate(c: Candidate, schedule, steps: int) -> Tensor:
    denoiser = DiffusionModel(schedule, "v").denoiser(c.net)
    labels = torch.arange(GEN_CLIPS) % NUM_CLASSES
    options: dict = {}
    if c.guided:
        options = dict(cond={"label": labels}, guidance_scale=GUIDANCE, null_cond={"label": NULL_LABEL})
    elif c.conditional:
        options = dict(cond={"label": labels})
    return sample(
        denoiser,
        (GEN_CLIPS, *c.shape),
        "dpmpp_2m",
        steps,
        seed=list(range(GEN_CLIPS)),
        schedule=schedule,
        spacing="trailing",  # as mmdiff.generation's default
        **options,
    )


def generation_benchmark(c: Candidate, schedule, s: Settings) -> Tensor:
    c.net.eval()
    for _ in range(s.gen_warmup):
        generate(c, schedule, WARMUP_STEPS)
    out: list[Tensor] = []
    seconds = timed(f"{c.name}: denoising", lambda: out.append(generate(c, schedule, s.gen_steps)), 0, s.gen_iters)
    c.results.update(gen_s=seconds, gen_audio_per_s=GEN_CLIPS * CLIP_SECONDS / seconds)
    return out[-1]


@torch.no_grad()
def vocoder_benchmark(adapter: LogMelAdapter, x: Tensor, s: Settings) -> tuple[float, int]:
    """Median seconds of ``adapter.mel_to_waveform(x)`` and the waveform length in samples."""
    samples = adapter.mel_to_waveform(x).shape[-1]
    return timed("Griffin-Lim", lambda: adapter.mel_to_waveform(x), s.gen_warmup, s.gen_iters), samples


def main() -> None:
    parser = bench_parser(__doc__, "2 timed iterations of everything, 3 sampler steps")
    args = parser.parse_args()
    s = QUICK if args.quick else FULL
    load_start, start = begin()

    peak = matmul_flops(s)
    print(f"matmul {MATMUL_N}^3 float32: {peak / 1e9:.1f} GFLOP/s", flush=True)

    schedule = vp_cosine()
    models = candidates(len(schedule.betas))
    adapter = LogMelAdapter()
    vocoder_s = samples = None
    for c in models:
        c.results["params"] = sum(p.numel() for p in c.net.parameters())
        train_benchmark(c, schedule, s)
        x = generation_benchmark(c, schedule, s)
        if vocoder_s is None:  # Griffin-Lim on our model's spectrograms; it costs the same for every model
            vocoder_s, samples = vocoder_benchmark(adapter, x, s)
        r = c.results
        r["gen_total_audio_per_s"] = GEN_CLIPS * CLIP_SECONDS / (r["gen_s"] + vocoder_s)
        print(
            f"{c.name}: {r['params'] / 1e6:.2f} M params, train {r['step_s']:.3f} s/step "
            f"({r['flops'] / 1e9:.1f} GFLOP), generation {r['gen_s']:.2f} s",
            flush=True,
        )
    wall = time.perf_counter() - start
    load = f"1-min load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"

    machine = f"{platform.platform(terse=True)}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    mode = " **--quick: 2 timed iterations, 3 sampler steps; not representative**" if args.quick else ""
    ours = models[0].results
    lines = [
        f"Audio U-Net speed, CPU preset (`recipe=audio_music_cpu`); {machine}, {torch.get_num_threads()} threads; "
        f"{datetime.date.today()}; wall time {wall:.0f} s; {load}.{mode}",
        "",
        f"Matmul reference (float32 {MATMUL_N} x {MATMUL_N} `a @ b`): **{peak / 1e9:.1f} GFLOP/s**. "
        f"Training: batch {BATCH} x {CLIP_SECONDS:g} s clips, `DiffusionLoss(DiffusionModel(vp_cosine(), 'v'))` forward + backward + "
        f"AdamW; median of {s.iters} steps after the FLOP-counting step and {s.warmup} warm-up. Generation: {GEN_CLIPS} clips x "
        f"{CLIP_SECONDS:g} s, dpmpp_2m, {s.gen_steps} steps, median of {s.gen_iters} after {s.gen_warmup} 2-step warm-up.",
        "",
        "| model | params (M) | GFLOP / train step | train clips/s | train audio-s/s | train GFLOP/s | % of matmul "
        "| gen audio-s/s (denoise) | gen audio-s/s (+ Griffin-Lim) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in models:
        r = c.results
        tag = " (guided, 2B)" if c.guided else " (unguided, B)"
        lines.append(
            f"| {c.name} | {r['params'] / 1e6:.2f} | {r['flops'] / 1e9:.1f} | {r['clips_per_s']:.1f} | "
            f"{r['clips_per_s'] * CLIP_SECONDS:.1f} | {r['flops_per_s'] / 1e9:.1f} | {100 * r['flops_per_s'] / peak:.0f}% | "
            f"{r['gen_audio_per_s']:.1f}{tag} | {r['gen_total_audio_per_s']:.1f} |"
        )
    d1 = models[1].results
    lines += [
        "",
        f"Generation split for the mmdiff U-Net: denoising {ours['gen_s']:.2f} s + Griffin-Lim (32 iterations, "
        f"{GEN_CLIPS} clips, {samples} samples each) {vocoder_s:.2f} s for {GEN_CLIPS * CLIP_SECONDS:g} s of audio; "
        f"the vocoder alone runs at {GEN_CLIPS * CLIP_SECONDS / vocoder_s:.1f} audio-s/s and the same Griffin-Lim time "
        "is added for every model in the last column.",
        "",
        "Notes:",
        "- FLOPs are counted by `FlopCounterMode` over one forward + backward (matmul, convolution, attention; not "
        "norms, activations or the optimizer), so GFLOP/s and % of matmul are lower bounds of the work done.",
        f"- diffusers UNet1DModel: {100 * d1['resample_flops'] / d1['flops']:.0f}% of its counted FLOPs are its "
        "`Downsample1d`/`Upsample1d` convolutions, which use a dense C x C x 8 kernel with only the diagonal set: "
        "counted but useless work. It has no class conditioning and gets time only as 16 Fourier channels "
        "concatenated to the input, so it is trained and sampled unconditionally (generation: batch 8, unguided).",
        "- diffusers UNet2DModel sees the log-mel as a 1-channel 128 x 120 image; guided like ours (null label 4 "
        "of `num_class_embeds=5`, one batched pass of 16).",
        "- Networks are untrained; speed does not depend on the weights.",
        "",
        "Configurations:",
        *(f"- {c.name}: `{c.config}`" for c in models),
    ]
    write_report(args.out / "audio.md", lines, wall)


if __name__ == "__main__":
    main()
