"""Joint audio-video generation in one pass or two, with each pass's sampler: is the sound in sync with its own picture?

For a trained joint run (``recipe=av_shapes_cpu``) this generates ``n`` clips jointly with each sampler of
``--joint``, then the sound again for those generated videos (video-to-audio, ``pipe.generate(n, video=...)``) with
each sampler of ``--v2a``: the second pass is ``generate.first=video`` with a sampler of its own. Each set is scored by
the sync measure of :mod:`mmdiff.modalities.av.sync` (the share of onsets within one frame of a bounce), against the
real clips' chance level (what ``mmdiff eval`` reports as ``sync_vs_chance``) and against the set's own chance level
(``sync_vs_own_chance``: its clips' bounces against the other clips' onsets): generated pictures that flicker show
more velocity reversals than the data, so onsets land near one by chance more often than in real clips. Each line
also says how fast the objects move (median pixels per frame, as the tracker sees them) and whether they stay whole
(the video eval's blob-count, area and colour change from frame to frame).

    python benchmarks/av_two_pass.py RUN [--n 64] [--joint unipc,euler_ancestral] [--v2a unipc,euler_ancestral]
    python benchmarks/av_two_pass.py RUN --n 48 --joint "" --first-video "guidance_scale=3;steps=50" [--raw]

``--first-video`` generates each listed variant with ``first="video"`` (the two passes as ``pipe.generate`` runs
them, the run's own generation settings with the variant's keys changed; an empty variant is the run's settings);
``--raw`` loads the trained weights instead of their EMA. Prints one line per set; about 25 minutes on 2 CPU cores at
n = 64 with the defaults, about 5 minutes per ``--first-video`` variant at n = 48.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from hydra.utils import instantiate

import mmdiff
from mmdiff.cli import parse_key_values
from mmdiff.modalities.av.sync import chance_scores, detect, object_speeds, scores_with_own_chance, sync_scores
from mmdiff.modalities.evaluation import real_items
from mmdiff.modalities.video.metrics import object_stability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a joint audio-video run folder")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--joint", default="unipc,euler_ancestral", help="samplers of the joint pass")
    parser.add_argument(
        "--v2a", default="unipc,euler_ancestral", help="samplers of the sound-for-the-picture pass (empty: none)"
    )
    parser.add_argument(
        "--first-video",
        default=None,
        help='picture-first variants, ";"-separated, each "key=value,..." of pipe.generate ("": the run\'s settings)',
    )
    parser.add_argument("--raw", action="store_true", help="the trained weights, not their EMA")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = mmdiff.load(args.run, device="cpu", ema=not args.raw)
    fps, sample_rate = pipe.adapter.fps, pipe.adapter.sample_rate
    tolerance = 1 / fps
    reference, _ = real_items(instantiate(pipe.config.data), args.n, "av_two_pass", "clips")
    onsets, bounces = detect(reference, fps, sample_rate)
    chance = chance_scores(onsets, bounces, tolerance)["onsets_near_bounce"]
    real = sync_scores(onsets, bounces, tolerance)["onsets_near_bounce"]
    print(f"real clips: precision {real:.3f}; real, mismatched (chance): {chance:.3f}; {picture(reference)}")
    length = reference[0]["video"].shape[1] / fps

    def score(name: str, items: list[dict]) -> None:
        s = scores_with_own_chance(*detect(items, fps, sample_rate), tolerance)
        print(
            f"{name}: precision {s['onsets_near_bounce']:.3f} ({s['onsets_near_bounce'] / chance:.2f}x chance, "
            f"{s['sync_vs_own_chance']:.2f}x own chance {s['own_chance']:.3f}), recall {s['bounces_with_onset']:.3f}, "
            f"onsets/clip {s['onsets_per_clip']:.2f}, bounces/clip {s['bounces_per_clip']:.2f}; {picture(items)}",
            flush=True,
        )

    for sampler in filter(None, args.joint.split(",")):
        start = time.time()
        joint = pipe.generate(args.n, seed=0, length=length, sampler=sampler)
        score(f"joint, {sampler}", joint)
        videos = [item["video"] for item in joint]
        for v2a in filter(None, args.v2a.split(",")):
            sound = pipe.generate(args.n, seed=1, video=videos, sampler=v2a)
            paired = [{"video": v, "audio": s["audio"]} for v, s in zip(videos, sound)]
            score(f"  its video, then the sound with {v2a}", paired)
        print(f"  ({time.time() - start:.0f} s)", flush=True)
    for variant in [] if args.first_video is None else args.first_video.split(";"):
        start = time.time()
        options = {"first": "video", **generate_options(variant)}
        score(f"first=video {variant or '(the run settings)'}", pipe.generate(args.n, seed=0, length=length, **options))
        print(f"  ({time.time() - start:.0f} s)", flush=True)


def picture(items: list[dict]) -> str:
    """How the clips' objects move and hold together: the median frame-to-frame move of the tracked objects (the
    sync measure's tracker; a bounce needs a move above its dead band) and the video eval's object stability."""
    moves = [object_speeds(item["video"]) for item in items]
    speed = float(np.median(np.concatenate(moves))) if any(len(m) for m in moves) else 0.0
    whole = object_stability(item["video"] for item in items)
    return (
        f"objects move {speed:.2f} px/frame, count/area/colour change {whole['object_count_change_share']:.3f}/"
        f"{whole['object_area_change']:.3f}/{whole['object_colour_change']:.3f}"
    )


def generate_options(variant: str) -> dict:
    """``"guidance_scale=3,sampler=unipc"`` -> ``{"guidance_scale": 3, "sampler": "unipc"}``: the pairs parsed as
    ``mmdiff sample`` parses its arguments (:func:`mmdiff.cli.parse_key_values`)."""
    try:
        return parse_key_values([p.strip() for p in variant.split(",") if p.strip()])
    except ValueError as error:
        raise SystemExit(f"--first-video {variant!r}: {error}") from None


if __name__ == "__main__":
    main()
