"""Reconstruction quality of mmdiff's autoencoder (:class:`mmdiff.nn.Autoencoder`) against its compression factor.

Each configuration trains a fresh autoencoder for a fixed number of steps on the built-in data with
:class:`mmdiff.latent.objective.AutoencoderLoss` (AdamW, lr 1e-3 after 20 warm-up steps, gradient clipping at 1,
1 torch thread, seed 0), then reconstructs held-out clips (indices the training never draws) through the posterior
mode (``decode(encode(x))``):

- **audio**: :func:`~mmdiff.modalities.audio.sources.music_or_folder`'s synth (conf/data/music.yaml defaults) through
  :class:`~mmdiff.modalities.audio.LogMelAdapter` (128 mels, 16 kHz, hop 256, 2 s clips = 120 frames),
  ``Autoencoder(dims=1, in_channels=128, channels=64)``, loss L1 + spectral (weight 1) + KL (1e-6), batch 8.
  Reported: L1 of the normalised log-mels, and log-spectral distance / spectral convergence of the waveforms
  (STFT magnitudes, :func:`~mmdiff.modalities.audio.roundtrip_quality`) for mel -> autoencoder -> Griffin-Lim,
  beside mel -> Griffin-Lim alone (what the representation itself loses).
- **video**: moving shapes (16 frames, 64 x 64, radius 0.15-0.25 as in recipes/video_shapes_cpu.yaml) through
  :class:`~mmdiff.modalities.video.VideoAdapter`, ``Autoencoder(dims=3, in_channels=3, channels=16,
  down_factor=(1, 2, 2), factorized=True, causal=True)``, loss L1 + gradient (weight 1) + KL (1e-6), batch 4 random
  crops of 8 frames x 32 x 32 (a fully convolutional network; 1/8 of a clip's cost per step), evaluated on whole
  16 x 64 x 64 clips. Reported: PSNR (dB, pixels in [0, 1]) and the temporal-change ratio of the reconstructions to
  the originals (:func:`~mmdiff.modalities.video.metrics.temporal_consistency_report`; 1 is right).

Each row also gives a naive baseline at the same factor: average-pool by the factor and interpolate back (linear in
time for mels, bilinear per frame for video), which keeps ``C / factor`` of the values per position instead of the
latent's ``latent_channels / factor``. ``--configs 4:8:32:0,4:8:4:1`` also sets the autoencoder's ``norm_groups`` and
``shortcuts`` (DC-AE's parameter-free paths) per row; the default grid uses 32 groups and no shortcuts. Usage:
``python benchmarks/autoencoder_recon.py [--quick] [--only audio|video] [--configs ...]``.
Writes benchmarks/results/autoencoder_recon.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmdiff.latent.objective import AutoencoderLoss
from mmdiff.modalities.audio import LogMelAdapter, roundtrip_quality
from mmdiff.modalities.audio.sources import music_or_folder
from mmdiff.modalities.video import VideoAdapter
from mmdiff.modalities.video.metrics import temporal_consistency_report
from mmdiff.modalities.video.sources import shapes_or_folder
from mmdiff.nn import Autoencoder

AUDIO_CONFIGS = [  # (latent_channels, time factor)
    (8, 4),
    (16, 4),
    (8, 2),
]
VIDEO_CONFIGS = [  # (latent_channels, spatial factor)
    (4, 4),
    (8, 4),
    (4, 8),
    (8, 8),
]
HELD_OUT = 16  # audio clips; video uses 8
MUSIC_SYNTH = {  # conf/data/music.yaml
    "size": 4096,
    "scale": "c_major_pentatonic",
    "instruments": ["sine", "square", "pluck", "organ"],
    "tempo_range": [90, 160],
    "note_range": [55, 79],
    "seed": 0,
}


def _mult(factor: int) -> tuple[int, ...]:
    """Channel multipliers giving ``log2(factor)`` downsamplings by 2."""
    levels = int(math.log2(factor))
    return (1, *([2] * levels))


def _options(options: list[int]) -> tuple[int, bool]:
    """``(norm_groups, shortcuts)`` from a config's optional third and fourth entries (defaults 32 and off: the
    autoencoder as it was before those options)."""
    return (int(options[0]) if options else 32), bool(options[1]) if len(options) > 1 else False


def _train(ae: Autoencoder, loss: AutoencoderLoss, batches, steps: int) -> tuple[float, float]:
    """``steps`` AdamW steps; returns (seconds, mean loss of the last 10% of steps)."""
    opt = torch.optim.AdamW(ae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    gen = torch.Generator().manual_seed(1)
    tail, start = [], time.perf_counter()
    for step in range(steps):
        x0 = batches(step)
        value = loss(ae, x0, generator=gen).mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step >= steps - max(1, steps // 10):
            tail.append(value.item())
    return time.perf_counter() - start, float(np.mean(tail))


class _ThroughAutoencoder:
    """Looks like the audio adapter to :func:`roundtrip_quality`, with the autoencoder between mel and vocoder."""

    def __init__(self, adapter: LogMelAdapter, ae: Autoencoder):
        self.adapter, self.ae = adapter, ae
        self.n_fft, self.hop_length = adapter.n_fft, adapter.hop_length

    def waveform_to_mel(self, audio):
        x = self.adapter.waveform_to_mel(audio)
        x = x[..., : x.shape[-1] // self.adapter.frame_multiple * self.adapter.frame_multiple]
        return self.ae.decode(self.ae.encode(x))

    def mel_to_waveform(self, x):
        return self.adapter.mel_to_waveform(x)


def run_audio(steps: int, configs=AUDIO_CONFIGS) -> list[dict]:
    data = music_or_folder(sample_rate=16000, duration=2.0, synth=MUSIC_SYNTH)
    adapter = LogMelAdapter(sample_rate=16000, n_mels=128, hop_length=256, duration=2.0)
    held = torch.stack([data[len(data) - 1 - i]["audio"] for i in range(HELD_OUT)])  # (N, 1, samples)
    x_held, _ = adapter.encode({"audio": held})  # (N, 128, 120)
    vocoder_only = roundtrip_quality(adapter, held)
    rows = []
    for latent, factor, *options in configs:
        torch.manual_seed(0)
        groups, shortcuts = _options(options)
        ae = Autoencoder(
            1,
            128,
            latent_channels=latent,
            channels=64,
            channel_mult=_mult(factor),
            norm_groups=groups,
            shortcuts=shortcuts,
        )
        loss = AutoencoderLoss(spectral_weight=1.0)
        rng = np.random.default_rng(0)

        def batches(step, rng=rng):
            idx = rng.integers(0, len(data) - HELD_OUT, 8)
            return adapter.encode({"audio": torch.stack([data[int(i)]["audio"] for i in idx])})[0]

        seconds, final_loss = _train(ae, loss, batches, steps)
        with torch.no_grad():
            recon = ae.decode(ae.encode(x_held))
            through = roundtrip_quality(_ThroughAutoencoder(adapter, ae), held)
            naive = F.interpolate(F.avg_pool1d(x_held, factor), scale_factor=factor, mode="linear")
        rows.append(
            {
                "modality": "audio",
                "latent_channels": latent,
                "norm_groups": groups,
                "shortcuts": shortcuts,
                "factors": list(ae.factors),
                "compression": 128 * factor / latent,
                "steps": steps,
                "train_seconds": round(seconds, 1),
                "final_loss": round(final_loss, 4),
                "mel_l1": round(float((recon - x_held).abs().mean()), 4),
                "lsd_db": round(through["log_spectral_distance_db"], 3),
                "spectral_convergence": round(through["spectral_convergence"], 4),
                "vocoder_only_lsd_db": round(vocoder_only["log_spectral_distance_db"], 3),
                "vocoder_only_spectral_convergence": round(vocoder_only["spectral_convergence"], 4),
                "naive_pool_mel_l1": round(float((naive - x_held).abs().mean()), 4),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over clips of PSNR (dB) for pixels in [0, 1]."""
    mse = (a - b).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def run_video(steps: int, configs=VIDEO_CONFIGS) -> list[dict]:
    frames, size = 16, (64, 64)
    data = shapes_or_folder(num_frames=frames, resolution=size, synth={"radius_range": [0.15, 0.25]})
    adapter = VideoAdapter(num_frames=frames, resolution=size, known_frames=0.0)
    held = torch.stack([data[len(data) - 1 - i]["video"] for i in range(8)])  # (8, 3, 16, 64, 64) in [0, 1]
    x_held, _ = adapter.encode({"video": held})
    ref = torch.stack(adapter.decode(x_held))
    rows = []
    for latent, factor, *options in configs:
        torch.manual_seed(0)
        groups, shortcuts = _options(options)
        ae = Autoencoder(
            3,
            3,
            latent_channels=latent,
            channels=16,
            channel_mult=_mult(factor),
            down_factor=(1, 2, 2),
            factorized=True,
            causal=True,
            norm_groups=groups,
            shortcuts=shortcuts,
        )
        loss = AutoencoderLoss(gradient_weight=1.0)
        rng = np.random.default_rng(0)

        def batches(step, rng=rng):
            clips = []
            for i in rng.integers(0, len(data) - 8, 4):
                video = data[int(i)]["video"]
                f0, y0, x0 = rng.integers(0, frames - 8 + 1), rng.integers(0, 33), rng.integers(0, 33)
                clips.append(video[:, f0 : f0 + 8, y0 : y0 + 32, x0 : x0 + 32])
            return torch.stack(clips) * 2 - 1

        seconds, final_loss = _train(ae, loss, batches, steps)
        with torch.no_grad():
            recon = torch.stack(adapter.decode(torch.cat([ae.decode(ae.encode(x)) for x in x_held.split(2)])))
            pooled = F.avg_pool3d(x_held, (1, factor, factor))
            naive = F.interpolate(pooled, scale_factor=(1, factor, factor), mode="trilinear")
            naive = torch.stack(adapter.decode(naive))
        report = temporal_consistency_report(recon, ref)
        rows.append(
            {
                "modality": "video",
                "latent_channels": latent,
                "norm_groups": groups,
                "shortcuts": shortcuts,
                "factors": list(ae.factors),
                "compression": 3 * factor * factor / latent,
                "steps": steps,
                "train_seconds": round(seconds, 1),
                "final_loss": round(final_loss, 4),
                "psnr_db": round(_psnr(recon, ref), 2),
                "temporal_change_ratio": round(report["temporal_change_ratio"], 3),
                "naive_pool_psnr_db": round(_psnr(naive, ref), 2),
                "naive_pool_temporal_change_ratio": round(
                    temporal_consistency_report(naive, ref)["temporal_change_ratio"], 3
                ),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _on(flag: bool) -> str:
    return "yes" if flag else "no"


def _markdown(audio: list[dict], video: list[dict], args, load: tuple[float, float]) -> str:
    lines = [
        "# Autoencoder reconstruction against compression",
        "",
        f"`python benchmarks/autoencoder_recon.py{''.join(' ' + a for a in sys.argv[1:])}`: 1 torch thread, seed 0, "
        f"load average {load[0]:.1f} at the start and {load[1]:.1f} at the end (a shared 2-core machine: the "
        "seconds are indicative). See the script's docstring for data, networks and losses. Compression = input "
        "values / latent values. Naive = average-pool by the factor and interpolate back. Norm groups and shortcuts: "
        "the autoencoder's `norm_groups` and `shortcuts`.",
        "",
    ]
    if audio:
        a0 = audio[0]
        lines += [
            "## Audio (log-mel 128 x 120 frames, 2 s at 16 kHz; 16 held-out synth clips)",
            "",
            f"Mel -> Griffin-Lim alone: LSD {a0['vocoder_only_lsd_db']} dB, spectral convergence "
            f"{a0['vocoder_only_spectral_convergence']}.",
            "",
            "| latent ch | time factor | norm groups | shortcuts | compression | steps | train s | mel L1 | "
            "naive mel L1 | LSD dB (AE + GL) | SC (AE + GL) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in audio:
            lines.append(
                f"| {r['latent_channels']} | {r['factors'][0]} | {r['norm_groups']} | {_on(r['shortcuts'])} | "
                f"{r['compression']:.0f}x | {r['steps']} | "
                f"{r['train_seconds']} | {r['mel_l1']} | {r['naive_pool_mel_l1']} | {r['lsd_db']} | "
                f"{r['spectral_convergence']} |"
            )
        lines.append("")
    if video:
        lines += [
            "## Video (16 frames 64 x 64 moving shapes; 8 held-out clips)",
            "",
            "| latent ch | spatial factor | norm groups | shortcuts | compression | steps | train s | PSNR dB | "
            "naive PSNR dB | temporal change ratio | naive ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in video:
            lines.append(
                f"| {r['latent_channels']} | {r['factors'][1]} | {r['norm_groups']} | {_on(r['shortcuts'])} | "
                f"{r['compression']:.0f}x | {r['steps']} | "
                f"{r['train_seconds']} | {r['psnr_db']} | {r['naive_pool_psnr_db']} | "
                f"{r['temporal_change_ratio']} | {r['naive_pool_temporal_change_ratio']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="a few steps per config (a smoke test)")
    parser.add_argument("--only", choices=("audio", "video"), default=None)
    parser.add_argument("--audio-steps", type=int, default=1000)
    parser.add_argument("--video-steps", type=int, default=200)
    parser.add_argument(
        "--configs",
        default=None,
        help="LATENT:FACTOR[:NORM_GROUPS[:SHORTCUTS 0/1]],... instead of the default grid (groups 32, no shortcuts)",
    )
    parser.add_argument("--name", default=None, help="report file name (default autoencoder_recon[_quick])")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    audio_steps, video_steps = (5, 3) if args.quick else (args.audio_steps, args.video_steps)
    picked = [tuple(int(v) for v in c.split(":")) for c in args.configs.split(",")] if args.configs else None
    audio = run_audio(audio_steps, picked or AUDIO_CONFIGS) if args.only in (None, "audio") else []
    video = run_video(video_steps, picked or VIDEO_CONFIGS) if args.only in (None, "video") else []
    load = (load_start, os.getloadavg()[0])
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name or ("autoencoder_recon_quick" if args.quick else "autoencoder_recon")
    (args.out / f"{name}.json").write_text(json.dumps({"audio": audio, "video": video, "load": load}, indent=1))
    (args.out / f"{name}.md").write_text(_markdown(audio, video, args, load))
    print((args.out / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
