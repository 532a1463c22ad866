"""The latent cache (issue 13): item keys from the data sources, latents computed once and reused, what invalidates
them, and a training run with the cache on."""

import logging
import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mmdiff.checkpoints import save_checkpoint
from mmdiff.latent import LatentAdapter
from mmdiff.latent.cache import LatentCache
from mmdiff.modalities.audio import LogMelAdapter, write_audio
from mmdiff.modalities.audio.folder import AudioFolder
from mmdiff.modalities.audio.synth import MusicSynth
from mmdiff.modalities.video import VideoAdapter
from mmdiff.modalities.video.folder import VideoFolder
from mmdiff.modalities.video.io import write_mp4
from mmdiff.modalities.video.synth import MovingShapes
from mmdiff.nn import Autoencoder

AUDIO_AE = dict(dims=1, in_channels=16, latent_channels=4, channels=8, channel_mult=[1, 2, 2], num_res_blocks=1)
VIDEO_AE = dict(
    dims=3, in_channels=3, latent_channels=4, channels=8, channel_mult=[1, 2], num_res_blocks=1, down_factor=[1, 2, 2]
)
STATS = {"shift": [0.1] * 4, "scale": [0.5] * 4}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A cache folder per test (the session's shared one would hold other tests' latents of the same clips)."""
    monkeypatch.setenv("MMDIFF_CACHE", str(tmp_path / "cache"))


def _ae_run(tmp_path, arguments, name="ae", seed=0):
    """A one-checkpoint autoencoder run as the trainer writes it (as in tests/test_latent.py)."""
    torch.manual_seed(seed)
    weights = Autoencoder(**arguments).state_dict()
    config = OmegaConf.to_yaml({"net": {"_target_": "mmdiff.nn.Autoencoder", **arguments}})
    save_checkpoint(tmp_path / name, 1, model=weights, ema=weights, state={}, config_yaml=config)
    return str(tmp_path / name)


def _mel():
    return LogMelAdapter(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16, duration=1.0, frame_multiple=16)


def _audio(tmp_path, cache=True, **kw):
    return LatentAdapter(_mel(), _ae_run(tmp_path, AUDIO_AE, **kw), stats=STATS, cache=cache)


def _batch(dataset, keys, field):
    """A collated batch of items ``keys`` (``(index, seed)``) with their item keys, as the trainer makes it."""
    return {
        field: torch.stack([dataset[k][field] for k in keys]),
        "_keys": [dataset.item_key(*k) for k in keys],
    }


def _counting(adapter, monkeypatch):
    """Count the samples the codec encodes."""
    calls = []
    encode = adapter.codec.encode
    monkeypatch.setattr(adapter.codec, "encode", lambda x: calls.append(x.shape[0]) or encode(x))
    return calls


# ---- item keys ---------------------------------------------------------------------------------------------------


def test_synth_keys_name_the_media_not_the_seed():
    music = MusicSynth(size=8, sample_rate=8000, duration=0.5)
    assert (
        music.item_key(3, 1)
        == music.item_key(3, 999)
        == MusicSynth(size=64, sample_rate=8000, duration=0.5).item_key(3, 7)
    )
    assert music.item_key(3, 1) != music.item_key(4, 1)
    for other in (
        dict(seed=1),
        dict(sample_rate=16000),
        dict(duration=1.0),
        dict(instruments=("sine",)),
        dict(scale="chromatic"),
    ):
        assert MusicSynth(**{"size": 8, "sample_rate": 8000, "duration": 0.5, **other}).item_key(
            3, 1
        ) != music.item_key(3, 1)
    shapes = MovingShapes(size=8, num_frames=4, resolution=16)
    assert shapes.item_key(2, 5) == shapes.item_key(2, 6) != shapes.item_key(1, 5)
    for other in (
        dict(seed=2),
        dict(num_frames=5),
        dict(resolution=24),
        dict(radius_range=(0.1, 0.2)),
        dict(colours=["red"]),
    ):
        assert MovingShapes(**{"size": 8, "num_frames": 4, "resolution": 16, **other}).item_key(
            2, 5
        ) != shapes.item_key(2, 5)


def test_folder_keys_change_with_the_crop_and_when_a_file_is_touched(tmp_path):
    rng = np.random.default_rng(0)
    write_audio(tmp_path / "a" / "long.wav", rng.uniform(-0.5, 0.5, (1, 8000)).astype(np.float32), 8000)
    write_audio(tmp_path / "a" / "short.wav", rng.uniform(-0.5, 0.5, (1, 2000)).astype(np.float32), 8000)
    folder = AudioFolder(tmp_path / "a", sample_rate=8000, duration=0.5, scan_cache=False)
    long, short = (next(i for i, c in enumerate(folder.clips) if c.path.stem == s) for s in ("long", "short"))
    keys = {folder.item_key(long, seed) for seed in range(6)}
    assert len(keys) == 6  # six crops of a 1 s file, six keys
    for seed in range(3):  # the key names the crop __getitem__ reads: equal keys, equal audio
        item, again = folder[long, seed], folder[long, seed + 100]
        assert (folder.item_key(long, seed) == folder.item_key(long, seed + 100)) == torch.equal(
            item["audio"], again["audio"]
        )
    assert folder.item_key(short, 1) == folder.item_key(short, 2)  # shorter than a crop: padded, one key
    before = folder.item_key(long, 0)
    stat = os.stat(folder.clips[long].path)
    os.utime(folder.clips[long].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert folder.item_key(long, 0) != before
    assert AudioFolder(tmp_path / "a", sample_rate=8000, duration=0.25, scan_cache=False).item_key(
        long, 0
    ) != folder.item_key(long, 0)

    clip = torch.rand(3, 12, 16, 16)
    write_mp4(tmp_path / "v" / "clip.mp4", clip, 8.0)
    videos = VideoFolder(tmp_path / "v", num_frames=4, fps=8.0, size=(16, 16), scan_cache=False)
    assert len({videos.item_key(0, seed) for seed in range(4)}) == 4
    assert torch.equal(videos[0, 3]["video"], videos[0, 3]["video"]) and videos.item_key(0, 3) == videos.item_key(0, 3)
    before = videos.item_key(0, 3)
    (tmp_path / "v" / "clip.mp4").touch()
    assert videos.item_key(0, 3) != before


# ---- the cache ---------------------------------------------------------------------------------------------------


def test_cached_encode_equals_uncached_and_a_second_pass_never_encodes(tmp_path, monkeypatch):
    data = MusicSynth(size=8, sample_rate=8000, duration=1.0)
    cached, plain = _audio(tmp_path), _audio(tmp_path, cache=False)
    keys = [(i, 10 + i) for i in range(4)]
    calls = _counting(cached, monkeypatch)
    first, _ = cached.encode(_batch(data, keys, "audio"))
    expected, _ = plain.encode(_batch(data, keys, "audio"))
    assert torch.equal(first, expected) and calls == [4] and cached.cache_stats() == (0, 4)
    files = sorted(cached._latent_cache.folder.rglob("*.npy"))
    assert len(files) == 4 and np.load(files[0], allow_pickle=False).dtype == np.float32
    again, _ = cached.encode(_batch(data, [(i, 50 + i) for i in range(4)], "audio"))  # other seeds, same clips
    assert torch.equal(again, expected) and calls == [4] and cached.cache_stats() == (4, 4)
    mixed_keys = [(2, 0), (5, 0), (0, 0), (6, 0)]  # two hits, two misses, encoded together
    mixed, _ = cached.encode(_batch(data, mixed_keys, "audio"))
    fresh, _ = plain.encode(_batch(data, mixed_keys, "audio"))
    assert calls == [4, 2] and cached.cache_stats() == (6, 6)
    assert torch.allclose(mixed, fresh, atol=1e-6) and torch.equal(mixed[[0, 2]], expected[[2, 0]])
    no_keys = _batch(data, keys, "audio")
    no_keys["_keys"] = ["", "", "", ""]  # items that cannot be cached: encoded as without a cache
    assert torch.equal(cached.encode(no_keys)[0], expected) and calls == [4, 2, 4] and cached.cache_stats() == (6, 6)


def test_video_known_frames_draw_the_same_with_and_without_the_cache(tmp_path):
    data = MovingShapes(size=4, num_frames=4, resolution=16)
    ae = _ae_run(tmp_path, VIDEO_AE)
    media = VideoAdapter(num_frames=4, resolution=(16, 16), fps=8.0, known_frames=0.5, max_known=2)
    cached, plain = LatentAdapter(media, ae, stats=STATS, cache=True), LatentAdapter(media, ae, stats=STATS)
    keys = [(i, i) for i in range(4)]
    for _ in range(2):  # misses, then hits
        gens = [torch.Generator().manual_seed(i) for i in range(4)]
        z, cond = cached.encode(_batch(data, keys, "video"), generator=gens)
        after = [float(torch.rand((), generator=g)) for g in gens]  # the objective draws its noise next
        gens = [torch.Generator().manual_seed(i) for i in range(4)]
        z0, cond0 = plain.encode(_batch(data, keys, "video"), generator=gens)
        assert torch.equal(z, z0) and torch.equal(cond["concat"], cond0["concat"])
        assert after == [float(torch.rand((), generator=g)) for g in gens]
    assert cached.cache_stats() == (4, 4)


def test_another_codec_or_mel_setting_uses_another_folder(tmp_path):
    data = MusicSynth(size=4, sample_rate=8000, duration=1.0)
    batch = lambda: _batch(data, [(0, 0), (1, 0)], "audio")  # noqa: E731
    first = _audio(tmp_path)
    first.encode(batch())
    retrained = LatentAdapter(_mel(), _ae_run(tmp_path, AUDIO_AE, name="ae2", seed=1), stats=STATS, cache=True)
    retrained.encode(batch())
    assert retrained.cache_stats() == (0, 2) and retrained._latent_cache.folder != first._latent_cache.folder
    same = LatentAdapter(_mel(), first.autoencoder, stats=STATS, cache=True)  # the same weights: the same folder
    same.encode(batch())
    assert same.cache_stats() == (2, 0) and same._latent_cache.folder == first._latent_cache.folder
    mel = LogMelAdapter(
        sample_rate=8000, n_fft=256, hop_length=64, n_mels=16, duration=1.0, frame_multiple=16, f_max=3000
    )
    other_mel = LatentAdapter(mel, first.autoencoder, stats=STATS, cache=True)
    other_mel.encode(batch())
    assert other_mel.cache_stats() == (0, 2) and other_mel._latent_cache.folder != first._latent_cache.folder


def test_a_corrupt_file_is_a_miss_and_is_written_again(tmp_path, caplog):
    data = MusicSynth(size=4, sample_rate=8000, duration=1.0)
    adapter = _audio(tmp_path)
    expected, _ = adapter.encode(_batch(data, [(0, 0), (1, 0)], "audio"))
    path = adapter._latent_cache.path(data.item_key(1, 0))
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with caplog.at_level(logging.WARNING, logger="mmdiff.latent"):
        again, _ = adapter.encode(_batch(data, [(0, 0), (1, 0)], "audio"))
    # the item re-encoded alone: equal up to float32 rounding (a batched conv rounds by batch size)
    assert torch.allclose(again, expected, atol=1e-6) and adapter.cache_stats() == (1, 3)
    assert str(path) in caplog.text and "cannot be read" in caplog.text
    assert np.load(path, allow_pickle=False).shape == tuple(expected.shape[1:])  # rewritten whole
    assert LatentCache(tmp_path / "empty").get(["k", ""]) == [None, None]


def test_a_training_run_with_the_cache_writes_latents_and_trains(tmp_path):
    from mmdiff.components import build_model, build_network
    from mmdiff.conditioners import ClassLabels
    from mmdiff.core import DiffusionLoss
    from mmdiff.train import Trainer

    cfg = OmegaConf.create(
        {
            "net": {"_target_": "mmdiff.nn.UNet", "dims": 1, "in_channels": 4, "channels": 8, "channel_mult": [1, 2]},
            "schedule": {"_target_": "mmdiff.core.vp_cosine"},
            "parameterization": "v",
        }
    )
    cfg.net.update(num_res_blocks=1, attention_levels=[], num_classes=4)
    adapter = LatentAdapter(_mel(), _ae_run(tmp_path, AUDIO_AE), latent_channels=4, stats_items=4, cache=True)
    conditioner = ClassLabels(num_classes=4)
    torch.manual_seed(0)
    Trainer(
        adapter=adapter,
        conditioner=conditioner,
        net=build_network(cfg, conditioner),
        dataset=MusicSynth(size=4, sample_rate=8000, duration=1.0),
        objective=DiffusionLoss(build_model(cfg)),
        optimizer=lambda p: torch.optim.AdamW(p, 1e-3),
        run_dir=tmp_path / "run",
        config_yaml=OmegaConf.to_yaml(cfg),
        max_steps=3,
        batch_size=4,
        sample_every=0,
        num_workers=0,
        device="cpu",
        progress=False,
    ).fit()
    hits, misses = adapter.cache_stats()
    assert misses == 4 and hits == 8  # 4 clips: encoded in the first step, read in the next two
    assert len(list(adapter._latent_cache.folder.rglob("*.npy"))) == 4
    assert (tmp_path / "run" / "checkpoints").is_dir()
