"""Training data speed: items/s from folders, the prepared store and shards, against what training consumes.

Makes its own media in a temporary folder (no download): music from the built-in synth written as 44.1 kHz stereo
mp3 and flac files (3-minute and 10-second), and moving shapes written as 24 fps 128x96 H.264 mp4 files (3-minute
and 10-second). Then, each in one process with one torch thread, one job at a time:

* items/s and ms/item of the audio data of the ``audio_music_cpu`` recipe (2 s crops at 16 kHz, mono) and the video
  data of ``video_shapes_cpu`` (16 frames of 16x16 at 8 fps), read (a) straight from a folder of 3-minute files,
  (b) from a folder of 10-second files, (c) from the prepared store of (a) + (b) (``data.folder.prepare=true``),
  (d) from shards of (b) (``data.shards=``); the built-in generators for reference;
* what training consumes: samples/s of the two CPU presets on the built-in data (a short run of each);
* start-up of ``AudioFolder`` over a folder of many tiny files (hard links), first and second time (scan cache).

Usage::

    python benchmarks/data.py [--out benchmarks/results] [--quick] [--startup-files 100000]

Writes ``data.md`` and ``data.json`` into ``--out``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import begin, bench_parser, compose_recipe

AUDIO = {"sample_rate": 16000, "duration": 2.0}  # audio_music_cpu's data
VIDEO = {"num_frames": 16, "fps": 8.0}  # video_shapes_cpu's data; resolution read from the recipe below
RATE = re.compile(r"([\d.]+) samples/s")


def _recipe_data(recipe: str) -> dict:
    from omegaconf import OmegaConf

    cfg = compose_recipe(recipe)
    return {**OmegaConf.to_container(cfg.data, resolve=True), "batch_size": cfg.trainer.batch_size}


# ---- media -------------------------------------------------------------------------------------------------------
def make_audio(folder: Path, seconds: float, count: int, formats: tuple[str, ...]) -> None:
    """``count`` files per format of ``seconds`` of synth music at 44.1 kHz stereo (clips of 10 s joined)."""
    from mmdiff.modalities.audio import write_audio
    from mmdiff.modalities.audio.synth import MusicSynth

    folder.mkdir(parents=True, exist_ok=True)
    synth = MusicSynth(size=4096, sample_rate=44100, duration=10.0, seed=1)
    clips = int(np.ceil(seconds / 10))
    for i in range(count):
        wave = torch.cat([synth[(i * clips + k) % len(synth)]["audio"] for k in range(clips)], dim=1)
        wave = wave[:, : int(seconds * 44100)].repeat(2, 1) * 0.8  # (2, T) stereo
        for fmt in formats:
            write_audio(folder / f"{fmt}_{i:03d}.{fmt}", wave, 44100)


def make_video(folder: Path, seconds: float, count: int) -> None:
    """``count`` mp4 files of ``seconds`` of moving shapes at 24 fps, 128x96 (clips of 10 s joined)."""
    from mmdiff.modalities.video.io import write_mp4
    from mmdiff.modalities.video.synth import MovingShapes

    folder.mkdir(parents=True, exist_ok=True)
    synth = MovingShapes(size=256, num_frames=240, resolution=(96, 128), seed=1)
    clips = int(np.ceil(seconds / 10))
    for i in range(count):
        frames = torch.cat([synth[(i * clips + k) % len(synth)]["video"] for k in range(clips)], dim=1)
        write_mp4(folder / f"clip_{i:03d}.mp4", frames[:, : int(seconds * 24)], 24.0)  # (3, F, H, W) in [0, 1]


# ---- measurements ------------------------------------------------------------------------------------------------
def items_per_second(dataset, n: int) -> dict:
    """Read ``n`` items at random keys ``(index, seed)`` in one process; the first item is not timed (opening)."""
    dataset[(0, 0)]
    g = torch.Generator().manual_seed(0)
    keys = [(int(torch.randint(len(dataset), (1,), generator=g)), 1000 + i) for i in range(n)]
    start = time.perf_counter()
    for key in keys:
        dataset[key]
    seconds = time.perf_counter() - start
    return {"items_per_s": round(n / seconds, 1), "ms_per_item": round(1000 * seconds / n, 3), "items": n}


def stream_per_second(dataset, n: int) -> dict:
    """Read ``n`` items of a streaming dataset (shards) in stream order, as training does."""
    from mmdiff.train.stream import item_seed

    stream = dataset.stream(range(n + 1), lambda e: item_seed(0, e, salt=1), lambda p: item_seed(0, p))
    next(stream)
    start = time.perf_counter()
    count = sum(1 for _ in stream)
    seconds = time.perf_counter() - start
    return {"items_per_s": round(count / seconds, 1), "ms_per_item": round(1000 * seconds / count, 3), "items": count}


def prepared_and_shards(table: dict, source, root: Path, kind: str, n: int) -> None:
    """Rows for the prepared store of the 3-minute and 10-second folders and for shards of the 10-second one;
    ``source(**options)`` builds the recipe's dataset (``root=``, ``folder=``, ``shards=``)."""
    from mmdiff.modalities.shards import write_shards

    for length, folder in (("3-min", root / f"{kind}_long"), ("10-s", root / f"{kind}_short")):
        start = time.perf_counter()
        dataset = source(root=str(folder), folder={"prepare": True})  # scans and prepares, then reads the store
        prepare_s = round(time.perf_counter() - start, 1)
        table[f"prepared store of {length} files"] = {**items_per_second(dataset, n * 5), "prepare_s": prepare_s}
    write_shards(source(root=str(root / f"{kind}_short")), str(root / f"shards_{kind}"), progress=False)
    table["shards of 10-s files"] = stream_per_second(source(shards=str(root / f"shards_{kind}")), n)


def training_rate(recipe: str, steps: int, run_dir: Path) -> float | None:
    """Samples/s a CPU preset trains at on its built-in data (mean of the logged intervals after the first)."""
    cmd = [sys.executable, "-m", "mmdiff", "train", f"recipe={recipe}", f"run_dir={run_dir}",
           f"trainer.max_steps={steps}", f"trainer.log_every={max(steps // 4, 1)}", "trainer.progress=false",
           "trainer.sample_every=0", f"trainer.checkpoint_every={steps}", "trainer.device=cpu"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    rates = [float(r) for r in RATE.findall(out.stdout + out.stderr)]
    if out.returncode or not rates:
        print(out.stderr[-2000:], flush=True)
        return None
    steady = rates[1:-1] or rates  # the last interval holds the final demo samples' wait on nothing: keep it out
    return round(sum(steady) / len(steady), 1)


def startup(root: Path, files: int) -> dict:
    """``AudioFolder`` construction over ``files`` hard links of 4 tiny wav files: first scan and second (cached)."""
    from mmdiff.modalities.audio import write_audio

    seeds = root / "seed"
    seeds.mkdir(parents=True)
    sources = []
    for i in range(4):
        sources.append(write_audio(seeds / f"s{i}.wav", torch.randn(1, 1600 * (i + 1)) * 0.1, 16000))
    folder = root / "many"
    for d in range(files // 1000 + 1):
        (folder / f"d{d:03d}").mkdir(parents=True)
    for i in range(files):
        os.link(sources[i % 4], folder / f"d{i // 1000:03d}" / f"f{i:06d}.wav")
    times = []
    for _ in range(2):  # each in a fresh process, as a new training run starts
        code = (
            "import time, torch; torch.set_num_threads(1); t = time.perf_counter(); "
            "from mmdiff.modalities.audio import AudioFolder; "
            f"AudioFolder({str(folder)!r}, sample_rate=16000, duration=0.05); print(time.perf_counter() - t)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        times.append(round(float(out.stdout.strip().splitlines()[-1]), 2))
    shutil.rmtree(folder)
    return {"files": files, "first_s": times[0], "second_s": times[1]}


# ---- report ------------------------------------------------------------------------------------------------------
def report(results: dict, out: Path) -> None:
    rows = []
    for modality, consumer in (("audio", "audio_music_cpu"), ("video", "video_shapes_cpu")):
        need = results["training"].get(consumer)
        for source, r in results[modality].items():
            share = f"{100 * need / r['items_per_s']:.0f}%" if need else "-"
            rows.append(f"| {modality} | {source} | {r['items_per_s']} | {r['ms_per_item']} | {share} |")
    s = results["startup"]
    lines = [
        "# Training data speed (benchmarks/data.py)",
        "",
        f"Measured {results['date']} on this machine ({os.cpu_count()} CPU cores, one process, one torch thread; "
        f"load average {results['load_start']:.1f} at the start). Media made by the benchmark: synth music as 44.1 kHz "
        "stereo mp3/flac, moving shapes as 24 fps 128x96 H.264 mp4. Audio items are `audio_music_cpu`'s (2 s crops "
        "at 16 kHz, mono), video items `video_shapes_cpu`'s (16 frames at 8 fps, "
        f"{results['video_resolution'][0]}x{results['video_resolution'][1]}). Command: `python benchmarks/data.py`.",
        "",
        "The last column is the time reading the data adds to a training step in one process (no loader workers, as "
        "`trainer.num_workers=auto` chooses on 2 cores), as a share of the step's own time: the samples/s the "
        "recipe's CPU preset trains at on the built-in data (audio_music_cpu "
        f"{results['training'].get('audio_music_cpu')} samples/s, video_shapes_cpu "
        f"{results['training'].get('video_shapes_cpu')}; measured in the same run, which already includes making the "
        "built-in items) over the items/s of the source.",
        "",
        "| modality | source | items/s | ms/item | added to a CPU step |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Start-up of an `AudioFolder` over {s['files']:,} files (hard links of 4 tiny wav files), each in a new "
        f"process: first scan {s['first_s']} s, second (scan cache) {s['second_s']} s.",
        "",
        f"3-minute against 10-second files, ms per item: audio mp3 {results['ratios']['audio mp3']}x, "
        f"flac {results['ratios']['audio flac']}x, video {results['ratios']['video']}x (goal: at most 1.5x).",
        "",
    ]
    (out / "data.md").write_text("\n".join(lines))
    (out / "data.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))


def main() -> None:
    parser = bench_parser(__doc__, "few files and items, 2,000-file start-up (a smoke test)")
    parser.add_argument("--startup-files", type=int, default=100_000)
    args = parser.parse_args()
    load_start, _ = begin()
    torch.set_num_threads(1)
    os.environ.setdefault("MMDIFF_CACHE", tempfile.mkdtemp(prefix="mmdiff_bench_cache_"))
    quick = args.quick
    n = 20 if quick else 200
    root = Path(tempfile.mkdtemp(prefix="mmdiff_bench_data_"))
    results: dict = {"date": time.strftime("%Y-%m-%d"), "load_start": load_start, "audio": {}, "video": {}}
    try:
        from mmdiff.modalities.audio.sources import music_or_folder
        from mmdiff.modalities.video.sources import shapes_or_folder

        video_data = _recipe_data("video_shapes_cpu")
        results["video_resolution"] = list(video_data["resolution"])
        video = {**VIDEO, "resolution": video_data["resolution"]}
        long_s = 60.0 if quick else 180.0
        print("making media ...", flush=True)
        make_audio(root / "audio_long", long_s, 1 if quick else 4, ("mp3", "flac"))
        make_audio(root / "audio_short", 10.0, 4 if quick else 24, ("mp3", "flac"))
        make_video(root / "video_long", long_s, 1 if quick else 2)
        make_video(root / "video_short", 10.0, 3 if quick else 12)

        def audio_folder(folder: Path, fmt: str, **options):
            (root / f"{folder.name}_{fmt}").mkdir(exist_ok=True)
            for f in folder.glob(f"*.{fmt}"):
                target = root / f"{folder.name}_{fmt}" / f.name
                if not target.exists():
                    os.link(f, target)
            return music_or_folder(root=str(root / f"{folder.name}_{fmt}"), **AUDIO, folder=options)

        print("audio ...", flush=True)
        results["audio"]["built-in synth"] = items_per_second(music_or_folder(**AUDIO), n)
        for length, folder in (("3-min", root / "audio_long"), ("10-s", root / "audio_short")):
            for fmt in ("mp3", "flac"):
                key = f"folder of {length} {fmt} files"
                results["audio"][key] = items_per_second(audio_folder(folder, fmt), n // 4)
        prepared_and_shards(results["audio"], lambda **o: music_or_folder(**AUDIO, **o), root, "audio", n)

        print("video ...", flush=True)
        results["video"]["built-in shapes"] = items_per_second(shapes_or_folder(**video), n)
        for length, folder in (("3-min", root / "video_long"), ("10-s", root / "video_short")):
            results["video"][f"folder of {length} mp4 files"] = items_per_second(
                shapes_or_folder(root=str(folder), **video), n // 4
            )
        prepared_and_shards(results["video"], lambda **o: shapes_or_folder(**video, **o), root, "video", n)
        a, v = results["audio"], results["video"]

        def ratio(long: str, short: str, table: dict) -> float:
            return round(table[long]["ms_per_item"] / table[short]["ms_per_item"], 2)

        results["ratios"] = {
            "audio mp3": ratio("folder of 3-min mp3 files", "folder of 10-s mp3 files", a),
            "audio flac": ratio("folder of 3-min flac files", "folder of 10-s flac files", a),
            "video": ratio("folder of 3-min mp4 files", "folder of 10-s mp4 files", v),
        }

        print("training consumption ...", flush=True)
        steps = 6 if quick else 30
        results["training"] = {
            r: training_rate(r, steps, root / f"run_{r}") for r in ("audio_music_cpu", "video_shapes_cpu")
        }
        print("start-up ...", flush=True)
        results["startup"] = startup(root / "startup", 2000 if quick else args.startup_files)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report(results, args.out)


if __name__ == "__main__":
    main()
