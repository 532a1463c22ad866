"""Every ```bash block in the README and docs/ runs, in miniature, so the commands the docs show cannot drift.

Each block runs as one bash script, line by line as a user would type it, in a fresh folder that holds a copy of
``examples/`` and a home folder with a small audio and video collection (for ``data.root=$HOME/my_music``). Only sizes
change: each documented ``mmdiff train`` line keeps every key it sets and gets the miniature overrides of its recipe
appended (Hydra keeps the last value of a key), ``mmdiff sample`` and ``mmdiff eval`` get two sampler steps (and
``eval`` four clips), process
counts are capped at the two cores CI has, and ``tensorboard --logdir DIR`` becomes a check that DIR holds the loss
curves. Every training line must leave checkpoints in its ``run_dir``; every ``sample`` line must write into ``out``.
Runs that a block samples from without training them are tiny stand-ins (``doc_runs`` in conftest.py).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import DOCS, ROOT

BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
TEST_COMMAND = 'pip install -e ".[dev]" && python -m pytest -q'  # the README's second command, run by .ci/run

COMMON = [
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.checkpoint_every=2",
    "trainer.sample_every=2",
    "trainer.lr_warmup_steps=1",
    "trainer.progress=false",
    "trainer.device=cpu",
    "generate.num_samples=2",
    "generate.steps=2",
]
UNET = ["net.channels=8", "net.channel_mult=[1,2]", "net.num_res_blocks=1", "net.attention_levels=[1]"]
AUDIO = [*UNET, "data.synth.size=16", "data.duration=0.5"]  # eval n=N needs 2N real clips
VIDEO = [*UNET, "data.synth.size=16", "data.num_frames=4", "data.resolution=[16,16]"]
MINIATURE = {  # recipe -> overrides that make its training line take seconds on a CPU
    "points_ring": ["net.width=32", "net.depth=1", "data.size=64"],
    "audio_music": AUDIO,
    "audio_music_cpu": AUDIO,
    "video_shapes": VIDEO,
    "video_shapes_cpu": VIDEO,
    "images_shapes": [*UNET, "data.size=16"],
}
TEXT = [
    "conditioner.dim=16",
    "conditioner.layers=1",
    "net.context_dim=16",
    "net.cross_attention_levels=[1]",
    "evaluator.fit_n=8",
]
MINIATURE |= {
    "audio_music_text": [*AUDIO, *TEXT],
    "audio_music_text_cpu": [*AUDIO, *TEXT],
    "video_shapes_text": [*VIDEO, *TEXT],
    "video_shapes_text_cpu": [*VIDEO, *TEXT],
}
# latent diffusion (docs/latent.md): the autoencoders at full depth (their factors fix the latent sizes) but narrow
AE = ["net.channels=8", "data.synth.size=16"]
LATENT = [*UNET, "data.synth.size=16", "adapter.stats_items=4"]
MINIATURE |= {
    "audio_vae": [*AE, "data.duration=0.5"],
    "audio_vae_cpu": [*AE, "data.duration=0.5"],
    "video_vae": [*AE, "data.num_frames=4", "data.resolution=[16,16]"],
    "video_vae_cpu": [*AE, "data.num_frames=4", "data.resolution=[16,16]"],
    "audio_music_latent": [*LATENT, "data.duration=0.5"],
    "audio_music_latent_cpu": [*LATENT, "data.duration=0.5"],
    "video_shapes_latent": [*LATENT, "data.num_frames=4", "data.resolution=[16,16]"],
    "video_shapes_latent_cpu": [*LATENT, "data.num_frames=4", "data.resolution=[16,16]"],
}
# joint audio-video (docs/audio_video.md): 1-s clips and narrow coupled U-Nets
AV = ["net.video.channels=8", "net.audio.channels=8", "data.synth.size=16", "data.num_frames=8", "evaluator.n=4"]
MINIATURE |= {"av_shapes": AV, "av_shapes_cpu": AV}
HEADER = ("set -eo pipefail", "set -x")  # every script starts with these
STAND_INS = {"points_ring", "music", "music_text", "shapes", "images", "av"}  # the runs in doc_runs
EVENTS_CHECK = (
    "from pathlib import Path; import sys; "
    "sys.exit(0 if any(Path(sys.argv[1]).rglob('events.out.tfevents.*')) else f'no TensorBoard events in {sys.argv[1]}')"
)


def _runs_within(lines: list[str], other: list[str]) -> bool:
    """``lines`` appear in ``other`` one after another: running ``other`` runs them, after the same or more setup."""
    n = len(lines)
    return any(other[i : i + n] == lines for i in range(len(other) - n + 1))


def _blocks():
    """Every bash block once: a block whose commands all run, in order, inside another block (the recipes page and
    the quickstart repeat commands of the other pages) is covered by that one."""
    found = []
    for path in DOCS:
        for i, text in enumerate(BLOCK.findall(path.read_text())):
            found.append((f"{path.relative_to(ROOT)}#{i}", text, _script(text)[0].splitlines()[len(HEADER) :]))
    for k, (name, text, lines) in enumerate(found):
        covered = any(
            _runs_within(lines, other) and (len(other) > len(lines) or j < k)
            for j, (_, _, other) in enumerate(found)
            if j != k
        )
        if not covered:
            yield pytest.param(text, id=name)


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` outside quotes that starts a word)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _value(tokens: list[str], key: str) -> str | None:
    values = [t.split("=", 1)[1] for t in tokens if t.startswith(key + "=")]
    return values[-1] if values else None


def _miniature(line: str) -> tuple[list[str], set[str], set[str]]:
    """Bash lines for one documented line, the run dirs it trains and the run dirs it reads."""
    line = _strip_comment(line)
    if not line:
        return [], set(), set()
    if line == TEST_COMMAND:  # the test suite itself: CI runs it (tested below), not this test
        return [], set(), set()
    line = re.sub(r"^pip install [^&]*&& ", "", line)  # the install is what CI does before the tests
    tokens = shlex.split(line)
    if tokens[0] == "tensorboard":
        logdir = tokens[tokens.index("--logdir") + 1]
        return [f"python -c {shlex.quote(EVENTS_CHECK)} {shlex.quote(logdir)}"], set(), set()
    line = re.sub(r"--num_processes \d+", "--num_processes 2", line)
    line = re.sub(r"--nproc_per_node \d+", "--nproc_per_node 2", line)
    if "mmdiff" not in tokens:
        return [line], set(), set()
    command = tokens[tokens.index("mmdiff") + 1 :]
    if command[:1] == ["train"] and _value(command, "recipe") and "--cfg" not in command:
        recipe = _value(command, "recipe")
        assert recipe in MINIATURE, f"a doc trains recipe {recipe!r}: add its miniature to MINIATURE in {__file__}"
        run_dir = _value(command, "run_dir")
        out = [line + " " + shlex.join(COMMON + MINIATURE[recipe])]
        if run_dir:
            out.append(
                f'test -d {shlex.quote(run_dir)}/checkpoints || {{ echo "no checkpoints in {run_dir}"; exit 1; }}'
            )
        return out, {run_dir} if run_dir else set(), set()
    if command[:1] in (["sample"], ["eval"]):
        extra = ["steps=2", "progress=false"] if command[0] == "sample" else ["steps=2", "n=4"]
        out = [line + " " + shlex.join(extra)]
        if command[0] == "sample":
            target = _value(command, "out") or "samples"
            out.append(f'test -n "$(ls -A {shlex.quote(target)})" || {{ echo "nothing written to {target}"; exit 1; }}')
        return out, set(), {_value(command, "run")}
    return [line], set(), set()


def _script(text: str) -> tuple[str, set[str]]:
    """The block as a bash script in miniature, and the runs it reads without training them first."""
    lines, trained, borrowed = list(HEADER), set(), set()
    for line in text.replace("\\\n", " ").splitlines():
        out, made, read = _miniature(line)
        borrowed |= {r for r in read if r not in trained}
        trained |= made
        lines += out
    return "\n".join(lines) + "\n", borrowed


def _home(root: Path) -> Path:
    """A home folder with ``my_music`` (three synthesized clips and a broken file), ``my_music_by_genre`` (two
    sub-folders of two clips) and ``my_videos`` (two clips)."""
    from mmdiff.modalities.audio import MusicSynth, write_audio
    from mmdiff.modalities.video import MovingShapes, write_mp4

    home = root / "home"
    (home / "my_music").mkdir(parents=True)
    music = MusicSynth(size=3, sample_rate=16000, duration=1.0, seed=0)
    for i in range(3):
        write_audio(home / "my_music" / f"clip_{i}.wav", music[i]["audio"], 16000)
    (home / "my_music" / "broken.wav").write_bytes(b"RIFF but not really a wav file")
    for i, genre in enumerate(["jazz", "jazz", "rock", "rock"]):
        write_audio(home / "my_music_by_genre" / genre / f"clip_{i}.wav", music[i % 3]["audio"], 16000)
    (home / "my_videos").mkdir()
    shapes = MovingShapes(size=2, num_frames=8, resolution=(16, 16), seed=0)
    for i in range(2):
        write_mp4(home / "my_videos" / f"clip_{i}.mp4", shapes[i]["video"], fps=8)
    return home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return _home(tmp_path_factory.mktemp("docs_home"))


@pytest.mark.parametrize("text", list(_blocks()))
def test_doc_shell_block_runs_in_miniature(text, tmp_path, home, doc_runs):
    script, borrowed = _script(text)
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("runs", "__pycache__"))
    for run in borrowed:
        name = Path(run).name
        assert name in STAND_INS, f"the block samples from {run}, which it does not train and no stand-in provides"
        shutil.copytree(doc_runs / name, work / run)
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{script}\n--- output ---\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    if "--num_processes" in text or "--nproc_per_node" in text:
        assert "x 2 process(es)" in proc.stdout + proc.stderr, "the multi-process commands did not start two processes"
    if "/my_music" in text:
        assert "broken.wav" in proc.stdout + proc.stderr, "the broken file in $HOME/my_music was not reported"


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in readme and TEST_COMMAND in ci


def test_the_miniature_keeps_the_documented_keys_and_appends():
    script, borrowed = _script("mmdiff train recipe=points_ring run_dir=runs/ring trainer.max_steps=3000  # resume\n")
    train = next(line for line in script.splitlines() if line.startswith("mmdiff train"))
    assert train.startswith("mmdiff train recipe=points_ring run_dir=runs/ring trainer.max_steps=3000 ")
    assert train.endswith("data.size=64") and "# resume" not in train and not borrowed
    _, borrowed = _script("mmdiff sample run=runs/points_ring n=4 out=out\n")
    assert borrowed == {"runs/points_ring"}


def test_a_block_counts_as_run_only_inside_another_in_order():
    assert _runs_within(["b", "c"], ["a", "b", "c"]) and not _runs_within(["c", "b"], ["a", "b", "c"])
    assert not _runs_within(["a", "c"], ["a", "b", "c"])
