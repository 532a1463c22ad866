"""Where does a latent video run's flicker come from: the diffusion model's latents, or the decoder?

``python benchmarks/latent_jitter.py RUN [--n 64] [--out FILE.json] [OPTION=VALUE ...]`` loads a latent video run
(``mmdiff train recipe=video_shapes_latent_cpu autoencoder.path=VAE_RUN``), encodes ``n`` real clips of its data (the
last indices, which training most likely never drew) and generates ``n`` clips with the run's generation settings
(``OPTION=VALUE`` overrides them, e.g. ``sampler=unipc steps=50``), capturing the latents the adapter decodes. It
reports, generated against real:

- ``latent_change``: mean absolute frame-to-frame change of the normalised latents (B, C, F, h, w), and its ratio;
- ``latent_second_difference``: mean absolute ``z[t+1] - 2 z[t] + z[t-1]``: jitter rather than motion;
- ``pixel_change``: the decoded clips' temporal change (:func:`~mmdiff.modalities.video.metrics.temporal_change`),
  for the real clips' reconstructions (what the autoencoder alone adds) and for the generated clips;
- ``object_*``: :func:`~mmdiff.modalities.video.metrics.object_stability` (whether bright objects keep their number,
  area and colour from frame to frame) of the real clips, their reconstructions and the generated clips: objects
  that break in the reconstructions break in the decoder, objects whole there but broken in the generated clips in
  the latents.

A latent ratio near 1 with a pixel ratio well above it points at the decoder; a latent ratio well above 1 at the
diffusion model or its sampler.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra.utils import instantiate

import mmdiff
from mmdiff.cli import parse_key_values
from mmdiff.modalities.video.metrics import object_stability, temporal_change


def _change(z: torch.Tensor) -> float:
    """Mean absolute difference of consecutive latent frames, z (B, C, F, h, w)."""
    return float((z[:, :, 1:] - z[:, :, :-1]).abs().mean())


def _second_difference(z: torch.Tensor) -> float:
    return float((z[:, :, 2:] - 2 * z[:, :, 1:-1] + z[:, :, :-2]).abs().mean())


@torch.no_grad()
def measure(run: Path, n: int, options: dict) -> dict:
    pipe = mmdiff.load(run)
    adapter, data = pipe.adapter, instantiate(pipe.config.data)
    media = torch.stack([data[(len(data) - 1 - i, 0)]["video"] for i in range(n)])  # (n, 3, F, H, W) in [0, 1]
    real, _ = adapter.encode({"video": media}, generator=[torch.Generator().manual_seed(i) for i in range(n)])
    rebuilt = adapter.decode(real)
    captured: list[torch.Tensor] = []
    decode = adapter.decode
    adapter.decode = lambda z: (captured.append(z.detach().clone()), decode(z))[1]  # the latents generation decodes
    try:
        clips = pipe.generate(n, progress=False, **options)
    finally:
        del adapter.decode
    generated = captured[-1]
    real_pixels = float(temporal_change(media).mean())
    row = {
        "run": str(run),
        "n": n,
        "options": options,
        "latent_change_real": round(_change(real), 4),
        "latent_change_generated": round(_change(generated), 4),
        "latent_change_ratio": round(_change(generated) / _change(real), 3),
        "latent_second_difference_real": round(_second_difference(real), 4),
        "latent_second_difference_generated": round(_second_difference(generated), 4),
        "pixel_change_real": round(real_pixels, 4),
        "pixel_change_ratio_reconstructed": round(float(temporal_change(rebuilt).mean()) / real_pixels, 3),
        "pixel_change_ratio_generated": round(float(temporal_change(clips).mean()) / real_pixels, 3),
    }
    for name, clips_ in (("real", media), ("reconstructed", rebuilt), ("generated", clips)):
        row |= {f"{key}_{name}": round(value, 4) for key, value in object_stability(clips_).items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--out", type=Path)
    parser.add_argument("options", nargs="*", help="generation options, OPTION=VALUE (as mmdiff sample takes them)")
    args = parser.parse_intermixed_args()
    row = measure(args.run, args.n, parse_key_values(args.options))
    print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
