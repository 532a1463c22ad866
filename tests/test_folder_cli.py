"""A user's folder of audio from the command line, end to end: a bad file's skip warning reaches ``train.log``, and
``mmdiff eval`` scores crops of the files (n=8 from 7 files) against the folder's own pitch classes."""

import os
import subprocess
import sys

import pytest

from mmdiff.modalities.audio import MusicSynth, write_audio

TINY_AUDIO = [
    "num_classes=0",
    "data.duration=0.5",
    "net.channels=8",
    "net.channel_mult=[1,2]",
    "net.num_res_blocks=1",
    "net.attention_levels=[1]",
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.checkpoint_every=2",
    "trainer.sample_every=0",
    "trainer.lr_warmup_steps=1",
    "trainer.progress=false",
    "trainer.device=cpu",
]


def mmdiff(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mmdiff", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"mmdiff {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_folder_run_logs_skipped_files_and_evaluates_on_crops(tmp_path):
    folder = tmp_path / "my_music"
    tunes = MusicSynth(size=7, sample_rate=16000, duration=2.0, scale="a_minor", seed=4)
    for i in range(7):  # 7 files of 2 s: 28 crops of 0.5 s
        write_audio(folder / f"tune_{i}.wav", tunes[i]["audio"], 16000)
    (folder / "broken.wav").write_text("not audio")
    (folder / "empty.wav").touch()
    run_dir = tmp_path / "run"
    mmdiff(["train", "recipe=audio_music_cpu", f"data.root={folder}", f"run_dir={run_dir}", *TINY_AUDIO], tmp_path)
    log = (run_dir / "train.log").read_text()
    assert f"AudioFolder: skipping {folder / 'empty.wav'}: the file is empty (0 bytes)" in log
    assert f"AudioFolder: skipping {folder / 'broken.wav'}: " in log
    scored = mmdiff(["eval", f"run={run_dir}", "n=8", "steps=2"], tmp_path)
    assert "pitch_class_distance" in scored.stdout and "on_scale_share" not in scored.stdout
    assert "real, held out" in scored.stdout
    assert "states no scale" in scored.stderr and "n=8 samples of 41 features" in scored.stderr
