"""Joint audio-video: the adapter's packed clips and known parts, generation with given tracks, and the CLI."""

from __future__ import annotations

import pytest
import torch
from _helpers import cli

from mmdiff.conditioners import ClassLabels
from mmdiff.core import DiffusionModel, vp_cosine
from mmdiff.generation import GenerateOptions, generate
from mmdiff.modalities.audio import LogMelAdapter
from mmdiff.modalities.av import SoundingShapes
from mmdiff.modalities.av.adapter import AudioVideoAdapter
from mmdiff.modalities.av.dependence import cross_modal_dependence
from mmdiff.modalities.av.io import has_audio, read_av
from mmdiff.modalities.video import VideoAdapter
from mmdiff.nn import JointUNet, UNet

FRAMES, RES, MELS = 8, (16, 16), 16


def _adapter(**options):
    video = VideoAdapter(num_frames=FRAMES, resolution=RES, fps=8.0, known_frames=0.0, gif=False)
    audio = LogMelAdapter(sample_rate=8000, n_fft=256, hop_length=250, n_mels=MELS)  # 4 mel frames per video frame
    return AudioVideoAdapter(video, audio, **options)


def _batch(n=4):
    data = SoundingShapes(size=8, num_frames=FRAMES, resolution=RES, fps=8.0, sample_rate=8000)
    items = [data[i] for i in range(n)]
    return {key: torch.stack([item[key] for item in items]) for key in ("video", "audio")}


def test_a_clip_packs_both_tracks_aligned_and_decodes_back():
    adapter = _adapter()
    assert adapter.audio_frames_per_frame == 4
    batch = _batch()
    x0, cond = adapter.encode(batch, [torch.Generator().manual_seed(i) for i in range(4)])
    layout = adapter.packing(FRAMES)
    assert x0.shape == (4, layout.size) and adapter.sample_shape() == (layout.size,)
    assert layout.shapes == {"video": (3, FRAMES, *RES), "audio": (MELS, 4 * FRAMES)}
    assert cond["concat"].shape == (4, adapter.packing(FRAMES, concat=True).size)
    clips = adapter.decode(x0)
    torch.testing.assert_close(clips[0]["video"], batch["video"][0])
    assert clips[0]["audio"].shape == batch["audio"][0].shape == (1, 8000)
    assert adapter.sample_shape(2.0) == (adapter.packing(16).size,)


def test_training_draws_each_known_part_by_seed():
    adapter = _adapter(known_video=0.3, known_audio=0.3, known_start=0.3)
    x0, _ = adapter.encode(_batch(1))
    x0 = x0.expand(400, -1)
    gens = [torch.Generator().manual_seed(i) for i in range(400)]
    mask = adapter.known_mask(x0, gens)
    again = adapter.known_mask(x0, [torch.Generator().manual_seed(i) for i in range(400)])
    assert torch.equal(mask, again)  # per-sample generators: the same draws
    parts = adapter.packing(FRAMES).unpack(mask)
    video, audio = parts["video"][:, 0, :, 0, 0], parts["audio"][:, 0]  # (B, F), (B, 4F)
    whole_video = video.all(1) & ~audio.any(1)
    whole_audio = audio.all(1) & ~video.any(1)
    leading = video[:, 0].bool() & ~video.all(1)
    nothing = ~video.any(1) & ~audio.any(1)
    for share in (whole_video, whole_audio, leading, nothing):
        assert 0.2 < share.float().mean() < 0.4 or share is nothing
    assert torch.equal(video[leading].repeat_interleave(4, dim=1), audio[leading])  # both tracks, same time span


def test_samples_given_a_whole_track_train_at_shifted_noise():
    """``given_noise_shift``: the loss's ``noise_shift`` is the shift exactly on samples given a whole track."""
    assert "noise_shift" not in _adapter().encode(_batch(2))[1]  # 1: the loss draws as for any adapter
    adapter = _adapter(known_video=0.3, known_audio=0.3, known_start=0.3, given_noise_shift=8.0)
    batch = {key: value.expand(200, *value.shape[1:]) for key, value in _batch(1).items()}
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(200)]  # noqa: E731
    x0, cond = adapter.encode(batch, gens())
    mask = adapter.known_mask(x0, gens())  # the same draws as inside encode
    assert torch.equal(cond["known_mask"], mask)  # the loss leaves the given parts out
    parts = adapter.packing(FRAMES).unpack(mask)
    whole = parts["video"].flatten(1).all(1) | parts["audio"].flatten(1).all(1)
    assert 0.4 < whole.float().mean() < 0.8
    assert torch.equal(cond["noise_shift"], torch.where(whole, 8.0, 1.0))
    with pytest.raises(ValueError, match="given_noise_shift"):
        _adapter(given_noise_shift=0.0)


def test_keep_masks_the_same_seconds_of_both_tracks():
    adapter = _adapter()
    layout = adapter.packing(FRAMES)
    parts = layout.unpack(adapter.range_mask((1, layout.size), 0.0, 0.5))
    assert parts["video"][0, 0, :, 0, 0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert parts["audio"][0, 0].sum() == 16  # 0.5 s of 250-sample hops at 8 kHz


def test_lengths_and_settings_are_checked():
    with pytest.raises(ValueError, match="whole number of frames"):
        _adapter().sample_shape(1.3)
    audio = LogMelAdapter(sample_rate=16000, hop_length=256)
    with pytest.raises(ValueError, match="mel frames per video frame"):
        AudioVideoAdapter(VideoAdapter(fps=8.0), audio)
    with pytest.raises(ValueError, match="<= 1"):
        _adapter(known_video=0.6, known_audio=0.6)


def _net():
    torch.manual_seed(0)
    common = {"channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": (), "num_classes": 2}
    video = UNet(dims=3, in_channels=3, down_factor=(1, 2, 2), factorized=True, concat_channels=4, **common)
    audio = UNet(dims=1, in_channels=MELS, concat_channels=MELS + 1, **common)
    return JointUNet(video, audio, resolution=RES, audio_frames_per_frame=4, coupling_levels=(1,))


@pytest.mark.parametrize("given", ["video", "audio"])
def test_a_given_track_is_kept_and_the_other_generated(given):
    adapter, batch = _adapter(), _batch(2)
    denoiser = DiffusionModel(vp_cosine(), "v").denoiser(_net())
    track = [batch[given][0], batch[given][1]] if given == "video" else batch[given][0]  # per sample, or one for all
    options = GenerateOptions(num_samples=2, steps=3, known_guidance_scale=2.0, guidance_scale=2.0)
    clips = generate(adapter, ClassLabels(num_classes=2), denoiser, options, request={given: track, "label": 1})
    if given == "video":
        for clip, video in zip(clips, track):
            torch.testing.assert_close(clip["video"], video.clamp(0, 1), atol=1e-5, rtol=0)
    else:
        mel = adapter.audio.waveform_to_mel  # Griffin-Lim's phase differs run to run: compare log-mels
        generated, given_mel = mel(clips[0]["audio"][None]), mel(track[None])
        other = mel(batch["audio"][1][None])
        same, different = (generated - given_mel).abs().mean(), (generated - other).abs().mean()
        assert same < different / 2, (same, different)  # 0.19 against 0.52 when written
    with pytest.raises(ValueError, match="use one of them"):
        generate(
            adapter,
            ClassLabels(num_classes=2),
            denoiser,
            options.replace(init=batch["video"][0]),
            request={given: track},
        )


def test_first_video_makes_the_sound_for_the_finished_picture(monkeypatch):
    """``first=video``: the joint pass, then the sound generated again with that pass's picture given and kept (as
    video-to-audio); a call that gives a part already is one pass, and a part the adapter lacks is an error."""
    import mmdiff.generation

    passes, sample = [], mmdiff.generation.sample

    def spy(*args, **kwargs):
        passes.append((kwargs.get("init"), kwargs.get("mask"), sample(*args, **kwargs)))
        return passes[-1][2]

    monkeypatch.setattr(mmdiff.generation, "sample", spy)
    adapter, labels = _adapter(), ClassLabels(num_classes=2)
    denoiser = DiffusionModel(vp_cosine(), "v").denoiser(_net())
    options = GenerateOptions(num_samples=2, steps=3, seed=[5, 9])
    generate(adapter, labels, denoiser, options.replace(first="video"), request={"label": 1})
    (no_init, no_mask, joint), (init, mask, final) = passes
    assert no_init is None and no_mask is None and init is joint
    layout = adapter.packing(FRAMES)
    assert torch.equal(mask, layout.mask({"video": 1.0}))
    torch.testing.assert_close(layout.unpack(final)["video"], layout.unpack(joint)["video"])  # the picture, kept
    assert not torch.allclose(layout.unpack(final)["audio"], layout.unpack(joint)["audio"])  # its sound, anew
    passes.clear()
    video = _batch(1)["video"][0]
    generate(adapter, labels, denoiser, options.replace(first="video"), request={"label": 1, "video": video})
    assert len(passes) == 1  # a call that gives a part: one pass
    with pytest.raises(ValueError, match="has no part 'picture'"):
        generate(adapter, labels, denoiser, options.replace(first="picture"), request={"label": 1})


def test_train_sample_video_to_audio_audio_to_video_and_continue_from_the_cli(tmp_path):
    tiny = [
        "trainer.max_steps=2",
        "trainer.batch_size=2",
        "trainer.checkpoint_every=2",
        "trainer.sample_every=2",
        "generate.num_samples=2",
        "generate.steps=2",
        "trainer.progress=false",
        "trainer.device=cpu",
        "net.video.channels=8",
        "net.audio.channels=8",
        "data.synth.size=8",
        "data.num_frames=8",
    ]
    cli(["train", "recipe=av_shapes_cpu", "run_dir=run", *tiny], tmp_path)
    demo = sorted(p.name for p in (tmp_path / "run" / "samples" / "step_000002").iterdir())
    assert demo == ["preview.png", "sample_000.mp4", "sample_000.wav", "sample_001.mp4", "sample_001.wav"]
    quick = ["run=run", "steps=2", "progress=false"]
    cli(["sample", *quick, "n=1", "out=gen"], tmp_path)
    clip = tmp_path / "gen" / "sample_000.mp4"
    assert has_audio(clip) and (tmp_path / "gen" / "sample_000.wav").is_file()
    cli(["sample", *quick, "n=2", "out=v2a", f"video={clip}", "known_guidance_scale=2"], tmp_path)
    cli(["sample", *quick, "n=1", "out=a2v", "audio=gen/sample_000.wav"], tmp_path)
    cli(["sample", *quick, "n=1", "out=cont", f"init={clip}", "keep=[0,0.5]", "length=1.5"], tmp_path)
    original = read_av(clip, 8, 8.0, RES, 16000)["video"]
    kept = read_av(tmp_path / "v2a" / "sample_001.mp4", 8, 8.0, RES, 16000)["video"]
    assert (kept - original).abs().mean() < 0.05  # the given video comes back (through H.264 twice)
    longer = read_av(tmp_path / "cont" / "sample_000.mp4", 12, 8.0, RES, 16000)
    assert longer["video"].shape[1] == 12 and longer["audio"].shape[-1] == 24000
    bad = cli(
        ["sample", *quick, "n=1", "out=bad", "video=gen/sample_000.mp4", "init=gen/sample_000.mp4"],
        tmp_path,
        check=False,
    )
    assert bad.returncode != 0 and "use one of them" in bad.stderr


class _Pipe:
    """What :func:`cross_modal_dependence` reads of a pipeline: adapter, conditioner, denoiser, device."""

    def __init__(self, adapter, denoiser):
        self.adapter, self.denoiser, self.device = adapter, denoiser, torch.device("cpu")
        self.conditioner = ClassLabels(num_classes=2)


def test_cross_modal_dependence_is_one_for_a_model_that_ignores_the_other_track_and_large_for_one_that_uses_it():
    adapter = _adapter()
    data = SoundingShapes(size=8, num_frames=FRAMES, resolution=RES, fps=8.0, sample_rate=8000)
    items = [data[i] for i in range(4)]
    x0, _ = adapter.encode({key: torch.stack([item[key] for item in items]) for key in ("video", "audio")})
    layout = adapter.packing(FRAMES)

    def apart(x, sigma, **cond):  # each element alone: the optimal denoiser of unit Gaussian data, no coupling
        return x / (1 + sigma[:, None] ** 2)

    def oracle(x, sigma, concat, **cond):  # names each clip by its video (given clean, or noisy): its audio
        known = adapter.packing(FRAMES, concat=True).unpack(concat)["video"]
        video = known[:, :3] if known[:, 3:].bool().all() else layout.unpack(x)["video"]
        nearest = torch.cdist(video.flatten(1), layout.unpack(x0)["video"].flatten(1)).argmin(dim=1)
        parts = layout.unpack(apart(x, sigma))
        return layout.pack({"video": parts["video"], "audio": 0.9 * layout.unpack(x0)["audio"][nearest]})

    ratios = cross_modal_dependence(_Pipe(adapter, apart), items, sigmas=(0.5, 1.0))
    assert ratios == pytest.approx(dict.fromkeys(ratios, 1.0), abs=1e-6)
    ratios = cross_modal_dependence(_Pipe(adapter, oracle), items, sigmas=(0.5,))
    assert ratios["audio_needs_video"] > 10 and ratios["audio_needs_given_video"] > 10  # its own audio: small error
    assert ratios["video_needs_audio"] == pytest.approx(1.0) == ratios["video_needs_given_audio"]
    with pytest.raises(ValueError, match="at least 2 clips"):
        cross_modal_dependence(_Pipe(adapter, apart), items[:1])


def test_a_file_given_for_every_sample_is_decoded_once(tmp_path, monkeypatch):
    from mmdiff.modalities.av.io import write_av

    adapter, batch = _adapter(), _batch(1)
    path = write_av(tmp_path / "clip.mp4", batch["video"][0], 8.0, batch["audio"][0], 8000)
    calls = []
    read = adapter._load_video
    monkeypatch.setattr(adapter, "_load_video", lambda source, frames: calls.append(source) or read(source, frames))
    known, _ = adapter.load_given({"video": path}, n=3)
    assert len(calls) == 1 and known.shape[0] == 3
    torch.testing.assert_close(known[0], known[2])
    adapter.load_given({"video": [path, batch["video"][0], path]}, n=3)
    assert len(calls) == 3  # once more for the file, once for the tensor
