"""Can a joint net's audio learn the knock times from the video? A probe of the coupling alone (issue 16).

A fresh small :class:`~mmdiff.nn.JointUNet` sees SoundingShapes clips with the video clean and the log-mels noisy at
``sigma`` (log-uniform in ``[sigma_lo, sigma_hi]``), and is trained on the audio error only, so the only way to do
better than the audio's marginal is to read the knock times off the picture. After ``--steps`` steps it reports, on 32
held-out clips, the audio error with each clip's own video and with the previous clip's video
(:func:`mmdiff.modalities.av.dependence`'s ratio: 1 = the video is not used). This isolates what the full recipe
has to learn among everything else, at a fraction of its cost.

    python benchmarks/av_coupling.py --levels 1 2 [--steps 150] [--sigma-lo 10] [--qk-norm] [--out benchmarks/results]

Appends one line per run to ``av_coupling.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mmdiff.modalities.audio import LogMelAdapter
from mmdiff.modalities.av import SoundingShapes
from mmdiff.modalities.av.adapter import AudioVideoAdapter
from mmdiff.modalities.video import VideoAdapter
from mmdiff.nn import JointUNet, UNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2], help="coupling levels (0 = full resolution)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--sigma-lo", type=float, default=10.0)
    parser.add_argument("--sigma-hi", type=float, default=10.0)
    parser.add_argument("--qk-norm", action="store_true", help="time_bias and qk_norm in the couplings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # recipe=av_shapes_cpu's geometry: 16 frames of 16x16 at 8 fps, 16 kHz, 64 mels, 8 mel frames per frame
    video = VideoAdapter(num_frames=16, resolution=(16, 16), fps=8.0, known_frames=0.0, gif=False)
    audio = LogMelAdapter(sample_rate=16000, hop_length=250, n_mels=64, log_center=-11.0, log_scale=2.0)
    adapter = AudioVideoAdapter(video, audio)
    layout = adapter.packing(16)
    common = {"channel_mult": (1, 2, 2), "num_res_blocks": 1, "attention_levels": ()}
    net = JointUNet(
        UNet(dims=3, in_channels=3, channels=32, down_factor=(1, 2, 2), factorized=True, **common),
        UNet(dims=1, in_channels=64, channels=64, **common),
        resolution=(16, 16),
        audio_frames_per_frame=8,
        coupling_levels=args.levels,
        time_bias=args.qk_norm,
        qk_norm=args.qk_norm,
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-4)
    data = SoundingShapes(size=10**6)
    g = torch.Generator().manual_seed(1)

    def tracks(indices) -> dict[str, torch.Tensor]:
        items = [data[i] for i in indices]
        batch = {key: torch.stack([item[key] for item in items]) for key in ("video", "audio")}
        return layout.unpack(adapter.encode(batch)[0])  # video (B, 3, 16, 16, 16), audio (B, 64, 128)

    def audio_out(parts, sigma, noise) -> torch.Tensor:
        x = layout.pack({"video": parts["video"], "audio": parts["audio"] + sigma[:, None, None] * noise})
        return layout.unpack(net(x, torch.atan(sigma) * 2 / torch.pi))["audio"]  # VP time of sigma

    start = time.perf_counter()
    for step in range(args.steps):
        parts = tracks(range(step * 8, step * 8 + 8))
        sigma = torch.empty(8).uniform_(*torch.tensor([args.sigma_lo, args.sigma_hi]).log().tolist(), generator=g)
        loss = ((audio_out(parts, sigma.exp(), torch.randn(8, 64, 128, generator=g)) - parts["audio"]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / args.steps
    parts = tracks(range(900000, 900032))
    swapped = {"video": parts["video"].roll(1, 0), "audio": parts["audio"]}
    line = (
        f"| {args.levels} | {'yes' if args.qk_norm else 'no'} | {args.sigma_lo:g}..{args.sigma_hi:g} | {args.steps} |"
    )
    with torch.no_grad():
        for s in (1.0, 3.0, 10.0):
            sigma, noise = torch.full((32,), s), torch.randn(32, 64, 128, generator=g)
            own, other = (((audio_out(p, sigma, noise) - parts["audio"]) ** 2).mean().item() for p in (parts, swapped))
            line += f" {own:.4f}, {other:.4f}: {other / own:.3f} |"
    line += f" {seconds:.2f} |"
    print(line)
    results = args.out / "av_coupling.md"
    if not results.exists():
        results.write_text(
            "# Coupling probe: does the audio learn the knock times from the video?\n\n"
            "`python benchmarks/av_coupling.py` (see its docstring). Each cell: the audio error with each clip's own "
            "video, with the previous clip's video, and their ratio (previous / own; 1: the video is not used), on 32 "
            "held-out clips.\n\n"
            "| coupling levels | time bias + QK norm | training sigma | steps | sigma 1 | sigma 3 | sigma 10 | "
            "s/step (batch 8) |\n|---|---|---|---|---|---|---|---|\n"
        )
    with results.open("a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
