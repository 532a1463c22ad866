"""The README's main job on a folder of 10-second music files against the same job on the built-in synth.

Issue 14's goal: with the prepared store, or straight from files with the new loader, ``mmdiff train
recipe=audio_music_cpu`` on a folder of 10-second music files takes at most 1.15x its time on the built-in data
(same recipe, same steps). The folder is made here: ``--files`` files of 10 s of synth music (another seed than the
training synth's) at 44.1 kHz stereo, mp3, as users' music usually is. Each job runs in its own process, one after
the other, timed from the command's start to its end (scan, prepare, training, demo samples, checkpoints).

Usage::

    python benchmarks/folder_training.py [--out benchmarks/results] [--files 96] [--steps 2500]

Writes ``folder_training.md`` / ``.json`` into ``--out``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import begin, bench_parser
from data import make_audio


def timed_job(run_dir: Path, steps: int, extra: list[str], env: dict) -> dict:
    cmd = [sys.executable, "-m", "mmdiff", "train", "recipe=audio_music_cpu", f"run_dir={run_dir}",
           f"trainer.max_steps={steps}", "trainer.progress=false", *extra]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if out.returncode:
        print(out.stderr[-3000:], flush=True)
    workers = [line for line in (out.stdout + out.stderr).splitlines() if "loader worker" in line]
    return {"seconds": round(seconds, 1), "returncode": out.returncode, "workers": workers[-1:] and workers[-1][-80:]}


def main() -> None:
    parser = bench_parser(__doc__, "8 files, 40 steps")
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--steps", type=int, default=2500)
    args = parser.parse_args()
    files, steps = (8, 40) if args.quick else (args.files, args.steps)
    load_start, _ = begin()
    root = Path(tempfile.mkdtemp(prefix="mmdiff_folder_job_"))
    env = {**os.environ, "MMDIFF_CACHE": str(root / "cache")}
    try:
        make_audio(root / "music", 10.0, files, ("mp3",))
        music = f"data.root={root / 'music'}"
        jobs = {
            "built-in synth": [],
            "folder, prepared store (data.folder.prepare=true)": [music, "data.folder.prepare=true"],
            "folder, straight from the files": [music],
        }
        results = {name: timed_job(root / f"run{i}", steps, extra, env) for i, (name, extra) in enumerate(jobs.items())}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = results["built-in synth"]["seconds"]
    rows = [f"| {name} | {r['seconds']} | {r['seconds'] / base:.2f}x |" for name, r in results.items()]
    text = "\n".join(
        [
            "# The main job on a folder of music files (benchmarks/folder_training.py)",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} CPU cores; load average "
            f"{load_start:.1f} at the start), one job at a time: `mmdiff train recipe=audio_music_cpu` for {steps} "
            f"steps, on the built-in synth and on a folder of {files} 10-second 44.1 kHz stereo mp3 files (synth music "
            "written by the benchmark). Wall time of the whole command. Goal of issue 14: at most 1.15x.",
            "",
            "| data | seconds | against built-in |",
            "| --- | --- | --- |",
            *rows,
            "",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "folder_training.md").write_text(text)
    (args.out / "folder_training.json").write_text(json.dumps(results, indent=2))
    print(text)


if __name__ == "__main__":
    main()
