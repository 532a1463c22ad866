"""Latent diffusion by composition (issue 13): the latent adapter around the audio and video adapters, codecs by path,
latent statistics stored with the run and reused, and a latent run that loads and edits without its autoencoder's
original folder."""

import json
import shutil

import pytest
import torch
from _helpers import cli
from omegaconf import OmegaConf
from safetensors.torch import save_file

from mmdiff.checkpoints import save_checkpoint
from mmdiff.configs import locate_run_assets, record_run_setup
from mmdiff.latent import LatentAdapter, load_codec
from mmdiff.latent.adapter import STATS_FILE
from mmdiff.modalities.audio import LogMelAdapter
from mmdiff.modalities.audio.sources import music_or_folder
from mmdiff.modalities.video import VideoAdapter
from mmdiff.modalities.video.sources import shapes_or_folder
from mmdiff.nn import Autoencoder

AUDIO_AE = dict(dims=1, in_channels=16, latent_channels=4, channels=8, channel_mult=[1, 2, 2], num_res_blocks=1)
VIDEO_AE = dict(
    dims=3,
    in_channels=3,
    latent_channels=4,
    channels=8,
    channel_mult=[1, 2],
    num_res_blocks=1,
    down_factor=[1, 2, 2],
    factorized=True,
    causal=True,
)


def _ae_run(tmp_path, arguments, name="ae"):
    """A one-checkpoint 'autoencoder run' as the trainer writes it (config.yaml naming mmdiff.nn.Autoencoder)."""
    torch.manual_seed(0)
    net = Autoencoder(**arguments)
    weights = net.state_dict()
    config = OmegaConf.to_yaml({"net": {"_target_": "mmdiff.nn.Autoencoder", **arguments}})
    save_checkpoint(tmp_path / name, 1, model=weights, ema=weights, state={}, config_yaml=config)
    return tmp_path / name


def _audio(tmp_path, **kw):
    media = LogMelAdapter(sample_rate=8000, n_fft=256, hop_length=64, n_mels=16, duration=1.0, frame_multiple=16)
    return LatentAdapter(media, str(_ae_run(tmp_path, AUDIO_AE)), **kw)


def _audio_data(n=8):
    return music_or_folder(sample_rate=8000, duration=1.0, synth={"size": n})


def _batch(dataset, n, key):
    return {key: torch.stack([dataset[(i, i)][key] for i in range(n)])}


def test_audio_latents_have_the_codec_shape_and_decode_to_waveforms(tmp_path):
    adapter = _audio(tmp_path, stats={"shift": [0.0] * 4, "scale": [1.0] * 4})
    z, cond = adapter.encode(_batch(_audio_data(), 2, "audio"))
    frames = adapter.media.sample_shape()[-1]
    assert z.shape == (2, 4, frames // 4) and cond == {}
    assert adapter.sample_shape() == (4, frames // 4) and adapter.sample_shape(2.0) == (
        4,
        adapter.media.sample_shape(2.0)[-1] // 4,
    )
    waves = adapter.decode(z)
    assert len(waves) == 2 and waves[0].shape[0] == 1 and waves[0].shape[-1] > 7000


def test_statistics_normalise_the_latents_and_are_checked(tmp_path):
    adapter = _audio(tmp_path)
    with pytest.raises(RuntimeError, match="latent statistics are not set"):
        adapter.encode(_batch(_audio_data(), 2, "audio"))
    stats = adapter.measure_stats(_audio_data(8))
    assert stats["items"] == 8 and len(stats["shift"]) == 4 and all(s > 0 for s in stats["scale"])
    adapter.set_stats(stats)
    z, _ = adapter.encode(_batch(_audio_data(8), 8, "audio"))
    dims = [0, 2]
    assert torch.allclose(z.mean(dims), torch.zeros(4), atol=1e-3) and torch.allclose(
        z.std(dims), torch.ones(4), atol=0.05
    )
    with pytest.raises(ValueError, match="4 shifts and 4 positive scales"):
        adapter.set_stats({"shift": [0.0] * 3, "scale": [1.0] * 3})
    with pytest.raises(ValueError, match="autoencoder.latent_channels=8, but the autoencoder at .* has 4"):
        _audio(tmp_path, latent_channels=8).sample_shape()


def test_a_range_of_seconds_keeps_the_latent_frames_wholly_inside_it(tmp_path):
    adapter = _audio(tmp_path, stats={"shift": [0.0] * 4, "scale": [1.0] * 4})
    shape = (1, *adapter.sample_shape())
    mask = adapter.range_mask(shape, 0.0, 0.5)
    media = adapter.media.range_mask((1, 16, shape[-1] * 4), 0.0, 0.5)[0, 0]  # (media frames,)
    expected = media.reshape(-1, 4).min(dim=1).values
    assert mask.shape == (1, 1, shape[-1]) and torch.equal(mask[0, 0], expected) and 0 < mask.sum() < shape[-1]


def test_prepare_run_stores_the_codec_and_statistics_and_a_resume_reads_them(tmp_path):
    adapter = _audio(tmp_path)
    run = tmp_path / "run"
    setup = adapter.prepare_run(_audio_data(8), run, fresh=True)
    stored = json.loads((run / "autoencoder" / STATS_FILE).read_text())
    assert setup["assets"] == {"autoencoder": "autoencoder"} and setup["settings"]["stats"]["shift"] == stored["shift"]
    assert (run / "autoencoder" / "codec.json").is_file() and (run / "autoencoder" / "model.safetensors").is_file()
    shutil.rmtree(tmp_path / "ae")  # the original autoencoder is gone: the run's copy is enough
    again = LatentAdapter(adapter.media, str(run / "autoencoder"))
    assert again.prepare_run(_audio_data(8), run, fresh=False)["settings"] == setup["settings"]  # no re-measuring
    x = torch.randn(2, 16, 64)
    assert torch.equal(again.codec.encode(x), adapter.codec.encode(x))


def test_run_settings_are_recorded_and_found_again_after_the_run_moved(tmp_path):
    setup = {"settings": {"stats": {"shift": [1.0], "scale": [2.0]}}, "assets": {"autoencoder": "autoencoder"}}
    text = record_run_setup("adapter:\n  autoencoder: /elsewhere\n  stats: null\n", "adapter", setup, tmp_path / "a")
    cfg = OmegaConf.create(text)
    assert cfg.adapter.stats.scale == [2.0] and cfg.run_assets == {"adapter.autoencoder": "autoencoder"}
    assert cfg.adapter.autoencoder == str((tmp_path / "a" / "autoencoder").absolute())
    (tmp_path / "b" / "autoencoder").mkdir(parents=True)
    locate_run_assets(cfg, tmp_path / "b")
    assert cfg.adapter.autoencoder == str(tmp_path / "b" / "autoencoder")
    with pytest.raises(FileNotFoundError, match="copy the whole run folder"):
        locate_run_assets(cfg, tmp_path / "c")


def test_codec_paths_that_are_not_autoencoders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_codec(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="expected an mmdiff autoencoder run"):
        load_codec(tmp_path / "empty")
    weights = {"w": torch.zeros(1)}
    config = OmegaConf.to_yaml({"net": {"_target_": "mmdiff.nn.UNet", "dims": 1}})
    save_checkpoint(tmp_path / "diffusion", 1, model=weights, ema=weights, state={}, config_yaml=config)
    with pytest.raises(ValueError, match="not an autoencoder run"):
        load_codec(tmp_path / "diffusion")
    (tmp_path / "stored").mkdir()
    (tmp_path / "stored" / "codec.json").write_text(json.dumps(AUDIO_AE))
    save_file({"w": torch.zeros(1)}, tmp_path / "stored" / "model.safetensors")
    with pytest.raises(ValueError, match="do not fit"):
        load_codec(tmp_path / "stored")


def test_video_latents_keep_frames_and_known_frames_come_as_latents(tmp_path):
    media = VideoAdapter(num_frames=4, resolution=(16, 16), fps=8.0, known_frames=1.0, max_known=1)
    adapter = LatentAdapter(media, str(_ae_run(tmp_path, VIDEO_AE)), stats={"shift": [0.0] * 4, "scale": [1.0] * 4})
    data = shapes_or_folder(num_frames=4, resolution=[16, 16], fps=8.0, synth={"size": 4})
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    z, cond = adapter.encode(_batch(data, 2, "video"), generator=gens)
    assert z.shape == (2, 4, 4, 8, 8) and cond["concat"].shape == (2, 5, 4, 8, 8)
    assert torch.equal(cond["concat"][:, :4, :1], z[:, :, :1]) and not cond["concat"][:, :4, 1:].any()  # frame 0 known
    assert adapter.sample_shape() == (4, 4, 8, 8)
    keep = adapter.range_mask((1, 4, 4, 8, 8), 0, 1)
    assert keep.shape == (1, 1, 4, 1, 1) and keep.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    image = torch.rand(3, 16, 16)
    init = adapter.load_init(image, length=4)  # image-to-video: the image as a 4-frame clip, in latents
    alone = adapter.to_latent(image[None, :, None] * 2 - 1)  # causal: the first latent frame is the image's own
    assert init.shape == (4, 4, 8, 8) and torch.allclose(init[:, :1], alone[0], atol=1e-5)
    clips = adapter.decode(z)
    assert clips[0].shape == (3, 4, 16, 16) and 0 <= float(clips[0].min()) and float(clips[0].max()) <= 1


TINY_RUN = [
    "trainer.max_steps=2",
    "trainer.batch_size=4",
    "trainer.checkpoint_every=2",
    "trainer.sample_every=2",
    "generate.num_samples=2",
    "generate.steps=3",
    "trainer.progress=false",
    "trainer.device=cpu",
    "net.channels=8",
]


def test_two_stages_from_the_cli_then_the_moved_run_generates_and_edits_without_the_autoencoder(tmp_path):
    """audio_vae_cpu, then audio_music_latent_cpu on it; the latent run moves and its autoencoder run is deleted:
    mmdiff sample (and continuation with keep=) still works from what the run keeps; resume is from its own copy."""
    audio = ["data.sample_rate=8000", "data.duration=1.0", "data.synth.size=16"]
    mel = ["n_fft=256", "hop_length=64", "n_mels=16"]
    cli(["train", "recipe=audio_vae_cpu", "run_dir=ae", *audio, *[f"adapter.{m}" for m in mel], *TINY_RUN], tmp_path)
    samples = sorted(p.name for p in (tmp_path / "ae" / "samples" / "step_000002").iterdir())
    assert samples == [
        "input_000.wav",
        "input_001.wav",
        "preview.png",
        "reconstruction_000.wav",
        "reconstruction_001.wav",
    ]
    latent = ["recipe=audio_music_latent_cpu", "autoencoder.path=ae", "adapter.stats_items=8", "data.duration=2.0"]
    latent += [*audio[:1], audio[2], *[f"adapter.media.{m}" for m in mel], *TINY_RUN]
    cli(["train", "run_dir=lat", *latent], tmp_path)
    stats = json.loads((tmp_path / "lat" / "autoencoder" / STATS_FILE).read_text())
    assert stats["items"] == 8 and len(stats["scale"]) == 8
    (tmp_path / "lat").rename(tmp_path / "moved")
    shutil.rmtree(tmp_path / "ae")
    cli(["sample", "run=moved", "n=2", "steps=3", "out=gen", "progress=false"], tmp_path)
    cli(["sample", "run=moved", "n=1", "steps=3", "out=cont", "init=gen/sample_000.wav", "keep=[0,1.0]"], tmp_path)
    edit = ["init=gen/sample_001.wav", "strength=0.5", "guidance_scale=3", "label=organ"]  # SDEdit + guidance + label
    cli(["sample", "run=moved", "n=1", "steps=4", "out=edit", *edit], tmp_path)
    assert (tmp_path / "edit" / "sample_000.wav").is_file()
    assert (tmp_path / "gen" / "sample_001.wav").is_file() and (tmp_path / "cont" / "sample_000.wav").is_file()
    trained = [*latent, "trainer.max_steps=4", "trainer.resume=auto", "autoencoder.path=gone"]
    cli(["train", "run_dir=moved", *trained], tmp_path)  # resumes from the run's own autoencoder copy
    assert (tmp_path / "moved" / "checkpoints" / "step_000004").is_dir()
    assert "using the autoencoder and statistics stored in" in (tmp_path / "moved" / "train.log").read_text()


def test_a_diffusers_autoencoder_by_path_is_copied_into_the_run_and_composes_with_video(tmp_path):
    """A tiny random AutoencoderKL saved into a folder (no hub): the latent adapter uses it frame by frame, the run
    keeps a copy of its config and safetensors weights, and the copy alone loads the same codec."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(
        {
            "block_out_channels": [8, 8],
            "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2,
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 4,
        }
    )
    vae.save_pretrained(tmp_path / "sd_vae")
    media = VideoAdapter(num_frames=4, resolution=(16, 16), fps=8.0, known_frames=0.0)
    adapter = LatentAdapter(media, str(tmp_path / "sd_vae"), latent_channels=4, stats_items=4)
    data = shapes_or_folder(num_frames=4, resolution=[16, 16], fps=8.0, synth={"size": 4})
    adapter.prepare_run(data, tmp_path / "run")
    copy = tmp_path / "run" / "autoencoder"
    assert (copy / "config.json").is_file() and (copy / "diffusion_pytorch_model.safetensors").is_file()
    z, cond = adapter.encode(_batch(data, 2, "video"))
    assert z.shape == (2, 4, 4, 8, 8) and cond["concat"].shape == (2, 5, 4, 8, 8)
    assert adapter.sample_shape(length=4) == (4, 4, 8, 8)
    x = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    shutil.rmtree(tmp_path / "sd_vae")
    assert torch.equal(load_codec(copy).encode(x), adapter.codec.encode(x))
    assert adapter.decode(z)[0].shape == (3, 4, 16, 16)
