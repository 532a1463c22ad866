"""Reconstruction quality of a trained autoencoder *run* (``mmdiff train recipe=audio_vae_cpu`` / ``video_vae_cpu``).

``python benchmarks/autoencoder_run.py RUN [--n 16] [--out FILE.json]`` builds the run's media adapter and data from
its config, loads the autoencoder as a latent run would (:func:`mmdiff.latent.load_codec`) and reconstructs ``n``
items the training most likely never drew (the last indices of the data, seed 0):

- audio (a log-mel adapter): L1 of the normalised log-mels; log-spectral distance and spectral convergence of
  mel -> autoencoder -> vocoder against mel -> vocoder alone (what the representation itself loses);
- video: PSNR (pixels in [0, 1]) and the temporal-change ratio of the reconstructions to the originals (clips as
  long as the run trained on), and that ratio again when every latent element gets Gaussian noise of
  ``LATENT_NOISE`` times its channel's spread before decoding: how much a diffusion model's small per-frame errors
  turn into flicker.

The same measures as ``benchmarks/autoencoder_recon.py``, for the recipes' own runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from autoencoder_recon import _psnr, _ThroughAutoencoder

from mmdiff.checkpoints import find_checkpoint
from mmdiff.latent import load_codec
from mmdiff.modalities.audio import LogMelAdapter, roundtrip_quality
from mmdiff.modalities.video.metrics import temporal_consistency_report

LATENT_NOISE = 0.1


@torch.no_grad()
def measure(run: Path, n: int = 16) -> dict:
    checkpoint = find_checkpoint(run)
    cfg = OmegaConf.load((checkpoint.parent if checkpoint.is_file() else checkpoint) / "config.yaml")
    adapter, data, codec = instantiate(cfg.adapter), instantiate(cfg.data), load_codec(run)
    items = [data[(len(data) - 1 - i, 0)] for i in range(n)]
    key = "audio" if isinstance(adapter, LogMelAdapter) else "video"
    media = torch.stack([item[key] for item in items])
    x, _ = adapter.encode({key: media}, generator=[torch.Generator().manual_seed(i) for i in range(n)])
    z = codec.encode(x)
    recon = codec.decode(z)
    row = {
        "run": str(run),
        "checkpoint": checkpoint.name,
        "latent_channels": codec.latent_channels,
        "factors": list(codec.factors),
        "compression": round(x[0].numel() / z[0].numel(), 1),
        "items": n,
    }
    if key == "audio":
        through = roundtrip_quality(_ThroughAutoencoder(adapter, codec), media)
        alone = roundtrip_quality(adapter, media)
        row |= {
            "mel_l1": round(float((recon - x).abs().mean()), 4),
            "lsd_db": round(through["log_spectral_distance_db"], 3),
            "spectral_convergence": round(through["spectral_convergence"], 4),
            "vocoder_only_lsd_db": round(alone["log_spectral_distance_db"], 3),
            "vocoder_only_spectral_convergence": round(alone["spectral_convergence"], 4),
        }
    else:
        clips, rebuilt = (x + 1) / 2, ((recon + 1) / 2).clamp(0, 1)
        report = temporal_consistency_report(list(rebuilt), list(clips))
        # a diffusion model's per-frame errors, modelled as noise of LATENT_NOISE x each latent channel's spread
        spread = z.transpose(0, 1).flatten(1).std(dim=1).reshape(1, -1, *[1] * (z.ndim - 2))  # (1, C, 1, ...)
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
        noisy = ((codec.decode(z + LATENT_NOISE * spread * noise) + 1) / 2).clamp(0, 1)
        row |= {
            "frames": int(x.shape[2]),
            "psnr_db": round(_psnr(rebuilt, clips), 2),
            "temporal_change_ratio": round(report["temporal_change_ratio"], 3),
            f"temporal_change_ratio_latent_noise_{LATENT_NOISE}": round(
                temporal_consistency_report(list(noisy), list(clips))["temporal_change_ratio"], 3
            ),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    row = measure(args.run, args.n)
    print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
