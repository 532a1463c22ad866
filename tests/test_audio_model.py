"""The audio modality end to end: shared U-Net blocks, the log-mel adapter and vocoder, training and generation."""

import numpy as np
import pytest
import torch
from _helpers import train_tiny_run

import mmdiff
from mmdiff.generation import decode_seeded
from mmdiff.modalities.audio import LogMelAdapter, load_audio, roundtrip_quality, write_audio
from mmdiff.modalities.audio.synth import MusicSynth
from mmdiff.nn import UNet


@pytest.mark.parametrize(("dims", "shape"), [(1, (2, 16, 24)), (2, (2, 3, 8, 12)), (3, (2, 3, 4, 8, 8))])
def test_unet_any_rank_shapes_and_checkpointing(dims, shape):
    torch.manual_seed(0)
    net = UNet(
        dims=dims,
        in_channels=shape[1],
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_classes=3,
    )
    x, t, label = torch.randn(shape), torch.tensor([10.0, 500.0]), torch.tensor([0, 3])
    out = net(x, t, label=label)
    assert out.shape == shape
    out.square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.gradient_checkpointing = True
    net(x, t, label=label).square().mean().backward()
    for g, p in zip(grads, net.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


def test_unet_takes_longer_inputs_and_names_bad_sizes():
    net = UNet(dims=1, in_channels=8, channels=16, channel_mult=(1, 2, 2), num_res_blocks=1)
    assert net(torch.randn(1, 8, 64), torch.tensor([3.0])).shape == (1, 8, 64)  # 4x the 16 it might train on
    with pytest.raises(ValueError, match=r"input size \(30,\) must be a multiple of \(4,\)"):
        net(torch.randn(1, 8, 30), torch.tensor([3.0]))


def test_logmel_adapter_shapes_lengths_and_stereo(tmp_path):
    adapter = LogMelAdapter(sample_rate=16000, n_mels=32, duration=1.0)
    audio = torch.randn(2, 1, 16000) * 0.1
    x, cond = adapter.encode({"audio": audio, "label": torch.tensor([0, 1])})
    assert x.shape == (2, 32, 56) and cond == {}  # 63 frames cropped to a multiple of 8
    assert adapter.sample_shape(3.0) == (32, 184)
    clips = adapter.decode(x)
    assert clips[0].shape == (1, 55 * 256)
    paths = adapter.write(clips, tmp_path)
    assert [p.name for p in paths] == ["sample_000.wav", "sample_001.wav"]
    assert load_audio(paths[0], 16000).shape[-1] == clips[0].shape[-1]
    assert adapter.preview(clips, tmp_path / "p.png").stat().st_size > 1000
    stereo = LogMelAdapter(sample_rate=16000, n_mels=32, channels=2)
    xs, _ = stereo.encode({"audio": torch.randn(1, 2, 16000)})
    assert xs.shape == (1, 64, 56) and stereo.decode(xs)[0].shape[0] == 2
    with pytest.raises(ValueError, match=r"audio batch must be \(B, 1, samples\)"):
        adapter.encode({"audio": torch.randn(2, 2, 100)})


def test_decoding_under_bf16_autocast_is_float32():
    """The trainer writes demo samples under its mixed precision; the vocoder (Griffin-Lim takes no bf16) and the
    decoded audio stay float32 (found on the first bf16 run of audio_music, where every demo sample step failed)."""
    adapter = LogMelAdapter(sample_rate=16000, n_mels=32, duration=0.5)
    x = torch.randn(2, *adapter.sample_shape())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        clips = decode_seeded(adapter, x, [0, 1])
    assert [c.dtype for c in clips] == [torch.float32] * 2
    assert torch.equal(clips[0], decode_seeded(adapter, x[:1], [0])[0])  # the same audio as without autocast


def test_round_trip_quality_bounds_what_a_model_can_sound_like():
    """audio -> log-mel -> Griffin-Lim -> audio on the built-in music. Measured (128 mels, 32 iterations):
    log-spectral distance ~3.1 dB, spectral convergence ~0.22; with 64 mels the convergence is ~0.55."""
    synth = MusicSynth(size=8, sample_rate=16000, duration=2.0)
    audio = torch.stack([synth[i]["audio"] for i in range(4)])
    report = roundtrip_quality(LogMelAdapter(sample_rate=16000, n_mels=128), audio)
    assert report["log_spectral_distance_db"] < 4.5
    assert report["spectral_convergence"] < 0.3
    worse = roundtrip_quality(LogMelAdapter(sample_rate=16000, n_mels=32), audio)
    assert worse["spectral_convergence"] > report["spectral_convergence"]


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    run_dir = train_tiny_run(tmp_path_factory.mktemp("audio_run"), "audio_config.yaml")
    assert list((run_dir / "samples" / "step_000003").glob("*.wav"))
    return run_dir


def test_generates_audio_of_the_requested_length_and_class(audio_run, tmp_path):
    pipe = mmdiff.load(audio_run, device="cpu")
    clips = pipe.generate(3, length=2.0, label=[0, 1, 3], steps=3, progress=False)
    assert [c.shape for c in clips] == [(1, 119 * 128)] * 3  # 2 s: 126 frames, cropped to 120; 119 hops
    paths = pipe.save(clips, tmp_path)
    assert len(paths) == 3 and all(p.suffix == ".wav" for p in paths)
    assert load_audio(paths[0], 8000).shape[-1] == 119 * 128


def test_audio_to_audio_and_continuation_from_a_file(audio_run, tmp_path, monkeypatch):
    pipe = mmdiff.load(audio_run, device="cpu")
    monkeypatch.setattr(pipe.adapter, "decode", lambda x: list(x))  # look at the log-mels the sampler made
    t = np.arange(8000) / 8000
    source = write_audio(tmp_path / "in.wav", 0.5 * np.sin(2 * np.pi * 440 * t)[None], 8000)
    original = pipe.adapter.load_init(source)  # (32, 56): 1 s
    sigmas, denoiser = [], pipe.denoiser
    monkeypatch.setattr(pipe, "denoiser", lambda x, s, **c: sigmas.append(float(s[0])) or denoiser(x, s, **c))
    edited = pipe.generate(2, init=source, strength=0.4, steps=10, label=0, progress=False)
    assert edited[0].shape == original.shape and len(sigmas) == 4 and max(sigmas) < 2.0  # the last 4 of 10 steps
    longer = pipe.generate(1, init=source, keep=(0.0, 1.0), length=2.0, steps=4, label=1, progress=False)
    kept = pipe.adapter.load_init(source, 2.0)  # the input zero-padded to 2 s
    assert longer[0].shape == kept.shape == (32, 120)  # continued to 2 s
    inside = int(1.0 * 8000 / 128) + 1  # frames whose time is < 1 s
    torch.testing.assert_close(longer[0][:, :inside], kept[:, :inside], atol=1e-4, rtol=1e-4)
    assert (longer[0][:, inside:] - kept[:, inside:]).abs().mean() > 0.05  # the rest is generated
    with pytest.raises(ValueError, match=r"keep: expected 0 <= start < end"):
        pipe.generate(1, init=source, keep=(1.0, 0.5), progress=False)


def test_music_evaluation_rows(audio_run):
    from mmdiff.modalities.audio.evaluate import MusicEvaluator

    pipe = mmdiff.load(audio_run, device="cpu")
    evaluator = MusicEvaluator()
    report = evaluator(pipe, MusicSynth(size=16, sample_rate=8000, duration=1.0), n=4, steps=3)
    assert list(report) == ["generated", "real, held out", "real via mel + vocoder"]
    assert report["real, held out"]["on_scale_share"] > 0.8  # the synth plays on its scale
    assert all(set(row) == {"voiced_share", "on_scale_share", "frechet_distance"} for row in report.values())
    with pytest.raises(ValueError, match="needs 2 x n = 40 real clips"):
        evaluator(pipe, MusicSynth(size=16, sample_rate=8000, duration=1.0), n=20)


def test_data_root_switches_the_recipe_to_a_folder(tmp_path):
    from mmdiff.modalities.audio import AudioFolder, music_or_folder

    t = np.arange(16000) / 16000
    write_audio(tmp_path / "a" / "tone.wav", 0.3 * np.sin(2 * np.pi * 330 * t)[None], 16000)
    folder = music_or_folder(root=str(tmp_path), sample_rate=16000, duration=0.5, folder={"labels": None})
    assert isinstance(folder, AudioFolder) and folder[(0, 1)]["audio"].shape == (1, 8000)
    assert isinstance(music_or_folder(sample_rate=8000, duration=0.5, synth={"size": 4}), MusicSynth)


def test_sample_cli_edits_an_input_file(audio_run, tmp_path, capsys):
    from mmdiff.cli import main

    t = np.arange(8000) / 8000
    source = write_audio(tmp_path / "in.wav", 0.5 * np.sin(2 * np.pi * 330 * t)[None], 8000)
    args = [
        "sample",
        f"run={audio_run}",
        "n=2",
        f"out={tmp_path / 'out'}",
        f"init={source}",
        "strength=0.5",
        "keep=[0,0.5]",
        "length=1.5",
        "steps=4",
        "label=1",
        "progress=false",
        "device=cpu",
    ]
    assert main(args) == 0
    written = sorted((tmp_path / "out").glob("*.wav"))
    assert len(written) == 2 and str(written[0]) in capsys.readouterr().out
    assert load_audio(written[0], 8000).shape[-1] == 87 * 128  # 1.5 s -> 88 frames (a multiple of 8) -> 87 hops
