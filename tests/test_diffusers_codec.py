"""Diffusers autoencoders from a local folder as latent codecs (issue 13), and the waveform adapter Oobleck composes
with. Every model is a tiny randomly initialised one built here with ``Class.from_config`` and saved into a temporary
folder: no hub access (sockets refuse to connect for the whole module)."""

import socket

import pytest
import torch
from _helpers import ROOT
from omegaconf import OmegaConf

from mmdiff.latent.diffusers_codec import DiffusersCodec
from mmdiff.modalities.audio import WaveformAdapter, load_audio

diffusers = pytest.importorskip("diffusers")

# The smallest settings each class accepts (some hard-code 32 normalisation groups); each model has < 0.4 M weights.
MODELS = {
    "AutoencoderKL": dict(
        block_out_channels=[8, 8],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=4,
        latent_channels=4,
        layers_per_block=1,
        scaling_factor=0.5,
        shift_factor=0.25,
        sample_size=8,  # tiles of 8 pixels when tile=True
    ),
    "AutoencoderTiny": dict(
        encoder_block_out_channels=[8, 8, 8],
        decoder_block_out_channels=[8, 8, 8],
        num_encoder_blocks=[1, 1, 1],
        num_decoder_blocks=[1, 1, 1],
        latent_channels=4,
    ),
    "AutoencoderDC": dict(
        latent_channels=4,
        attention_head_dim=4,
        encoder_block_types=["ResBlock"] * 3,
        decoder_block_types=["ResBlock"] * 3,
        encoder_block_out_channels=[8, 8, 8],
        decoder_block_out_channels=[8, 8, 8],
        encoder_layers_per_block=[1, 1, 1],
        decoder_layers_per_block=[1, 1, 1],
        encoder_qkv_multiscales=[[], [], []],
        decoder_qkv_multiscales=[[], [], []],
    ),
    "AutoencoderKLTemporalDecoder": dict(
        block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D"] * 2, latent_channels=4, layers_per_block=1
    ),
    "AutoencoderKLCogVideoX": dict(
        down_block_types=["CogVideoXDownBlock3D"] * 3,
        up_block_types=["CogVideoXUpBlock3D"] * 3,
        block_out_channels=[8, 8, 8],
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=4,
    ),
    "AutoencoderKLHunyuanVideo": dict(
        down_block_types=["HunyuanVideoDownBlock3D"] * 3,
        up_block_types=["HunyuanVideoUpBlock3D"] * 3,
        block_out_channels=[8, 8, 8],
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        spatial_compression_ratio=4,
        temporal_compression_ratio=4,
    ),
    "AutoencoderKLLTXVideo": dict(
        block_out_channels=[8, 8],
        decoder_block_out_channels=[8, 8],
        down_block_types=["LTXVideoDownBlock3D"] * 2,
        latent_channels=4,
        layers_per_block=[1, 1, 1],
        decoder_layers_per_block=[1, 1, 1],
        spatio_temporal_scaling=[True, True],
        decoder_spatio_temporal_scaling=[True, True],
        decoder_inject_noise=[False] * 3,
        downsample_type=["conv"] * 2,
        upsample_residual=[False] * 2,
        upsample_factor=[1, 1],
        patch_size=2,
    ),
    "AutoencoderKLWan": dict(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ),
    "AutoencoderKLMochi": dict(
        encoder_block_out_channels=[32, 32],
        decoder_block_out_channels=[32, 32],
        latent_channels=4,
        layers_per_block=[1, 1, 1],
        temporal_expansions=[2],
        spatial_expansions=[2],
        add_attention_block=[False] * 3,
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ),
    "AutoencoderOobleck": dict(
        encoder_hidden_size=4,
        downsampling_ratios=[2, 4],
        channel_multiples=[1, 2],
        decoder_channels=4,
        decoder_input_channels=2,
        audio_channels=1,
        sampling_rate=16000,
    ),
}
# (per-sample media shape, the latent shape worked out by hand from the class's rule) for each tiny model
SHAPES = {
    "AutoencoderKL": [((3, 16, 24), (4, 8, 12)), ((3, 2, 8, 8), (4, 2, 4, 4))],
    "AutoencoderTiny": [((3, 16, 8), (4, 4, 2))],
    "AutoencoderDC": [((3, 16, 8), (4, 4, 2))],
    "AutoencoderKLTemporalDecoder": [((3, 3, 8, 8), (4, 3, 4, 4)), ((3, 8, 8), (4, 4, 4))],
    "AutoencoderKLCogVideoX": [((3, 1, 8, 8), (4, 1, 2, 2)), ((3, 9, 8, 16), (4, 3, 2, 4))],
    "AutoencoderKLHunyuanVideo": [((3, 1, 8, 8), (4, 1, 2, 2)), ((3, 5, 8, 16), (4, 2, 2, 4))],
    "AutoencoderKLLTXVideo": [((3, 5, 16, 8), (4, 2, 2, 1))],
    "AutoencoderKLWan": [((3, 5, 8, 16), (4, 2, 2, 4))],
    "AutoencoderKLMochi": [((3, 3, 4, 8), (4, 2, 2, 4))],
    "AutoencoderOobleck": [((1, 64), (2, 8))],
}
VIDEO = ["AutoencoderKLCogVideoX", "AutoencoderKLHunyuanVideo", "AutoencoderKLLTXVideo", "AutoencoderKLWan"]
VIDEO += ["AutoencoderKLMochi"]


@pytest.fixture(autouse=True, scope="module")
def _offline():
    """Any network connection attempt fails loudly while these tests run; the hub client is told it is offline."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)
    torch.manual_seed(0)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A saved tiny model folder per class, made on first use (``folders(name) -> Path``)."""
    root, made = tmp_path_factory.mktemp("diffusers"), {}

    def folder(name: str, **saving):
        if name not in made:
            torch.manual_seed(0)
            getattr(diffusers, name).from_config(MODELS[name]).save_pretrained(root / name, **saving)
            made[name] = root / name
        return made[name]

    return folder


def _media(shape: tuple[int, ...], batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(1)) * 2 - 1  # pixels in [-1, 1]


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_agree_with_what_the_model_does(folders, name):
    codec = DiffusersCodec(str(folders(name)))
    assert codec.latent_channels == (2 if name == "AutoencoderOobleck" else 4)
    assert not any(p.requires_grad for p in codec.parameters())
    codec.train()
    assert not codec.model.training  # frozen: a parent's .train() does not turn dropout on
    for media, latent in SHAPES[name]:
        x = _media(media)
        z = codec.encode(x)
        assert tuple(z.shape) == (2, *latent) == (2, *codec.latent_shape(media)), (media, z.shape)
        assert codec.media_shape(latent) == media
        assert torch.equal(z, codec.encode(x))  # deterministic: the posterior's mode, no sampling
        y = codec.decode(z)
        assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


@pytest.mark.parametrize("name", VIDEO)
def test_frame_rule_is_the_models_own(folders, name):
    """For every frame count up to 17 the codec accepts exactly those the model gets back from a round trip with the
    first frame alone (``1 + t*k -> 1 + k``), and gives the latent frames the model makes."""
    codec = DiffusersCodec(str(folders(name)))
    for frames in range(1, 18):
        x = _media((3, frames, 8, 16), batch=1)
        with torch.no_grad():
            z = codec.model.encode(x).latent_dist.mode()
            try:
                back = codec.model.decode(z).sample.shape[2]
            except RuntimeError:  # a latent the decoder cannot take: no round trip either
                back = None
        try:
            latent = codec.latent_shape((3, frames, 8, 16))
        except ValueError as e:
            # refused: the model does not give these frames back, or not causally (CogVideoX codes 8k frames as 2k)
            causal = back == frames and 1 + (z.shape[2] - 1) * codec.layout.time == frames
            assert not causal, f"{name}: {frames} frames survive the model's causal round trip but were refused"
            assert str(e).startswith(f"frames {frames} do not fit {name}") and "\n" not in str(e)
        else:
            assert back == frames and latent[1] == z.shape[2], (name, frames, back, latent, z.shape)


def test_latents_are_unscaled_and_frames_fold_into_the_batch(folders):
    """KL latents are the posterior's mean, without the config's scaling_factor / shift_factor; a clip is coded frame
    by frame, the same as coding its frames as images."""
    codec = DiffusersCodec(str(folders("AutoencoderKL")))
    clip = _media((3, 3, 8, 16))  # (2, 3, F=3, 8, 16)
    with torch.no_grad():
        mean = codec.model.encode(clip[:, :, 1]).latent_dist.mean
    z = codec.encode(clip)
    torch.testing.assert_close(z[:, :, 1], mean)
    per_frame = torch.stack([codec.encode(clip[:, :, f]) for f in range(3)], dim=2)
    torch.testing.assert_close(z, per_frame, rtol=1e-5, atol=1e-6)
    decoded = torch.stack([codec.decode(z[:, :, f]) for f in range(3)], dim=2)
    torch.testing.assert_close(codec.decode(z), decoded, rtol=1e-5, atol=1e-6)


def test_sizes_that_do_not_fit_are_named(folders):
    image = DiffusersCodec(str(folders("AutoencoderKL")))
    with pytest.raises(
        ValueError, match=r"^height 10 does not fit AutoencoderTiny at .*multiple of 4 \(e\.g\. 8 or 12\)"
    ):
        DiffusersCodec(str(folders("AutoencoderTiny"))).latent_shape((3, 10, 16))
    with pytest.raises(ValueError, match=r"^width 5 does not fit .*multiple of 2 \(e\.g\. 4 or 6\)"):
        image.encode(_media((3, 4, 5)))
    with pytest.raises(ValueError, match=r"media channels 1 do not fit AutoencoderKL .* it takes 3"):
        image.latent_shape((1, 8, 8))
    with pytest.raises(ValueError, match=r"latent channels 3 do not fit"):
        image.decode(torch.zeros(1, 3, 4, 4))
    with pytest.raises(
        ValueError, match=r"^frames 6 do not fit AutoencoderKLHunyuanVideo .*1 \+ 4k frames \(e\.g\. 5 or 9\)"
    ):
        DiffusersCodec(str(folders("AutoencoderKLHunyuanVideo"))).latent_shape((3, 6, 8, 8))
    with pytest.raises(
        ValueError, match=r"^frames 5 do not fit AutoencoderKLCogVideoX .*1 \+ 8k frames \(e\.g\. 1 or 9\)"
    ):
        DiffusersCodec(str(folders("AutoencoderKLCogVideoX"))).latent_shape((3, 5, 8, 8))
    with pytest.raises(ValueError, match=r"takes per-sample \(C, F, H, W\)"):
        DiffusersCodec(str(folders("AutoencoderKLWan"))).latent_shape((3, 8, 8))
    with pytest.raises(
        ValueError, match=r"^samples 60 does not fit AutoencoderOobleck .*multiple of 8 \(e\.g\. 56 or 64\)"
    ):
        DiffusersCodec(str(folders("AutoencoderOobleck"))).latent_shape((1, 60))


def test_temporal_decoder_decodes_each_clip_with_its_frames(folders):
    """Stable Video Diffusion's decoder mixes a clip's frames in time: two clips decode as two, not as one."""
    codec = DiffusersCodec(str(folders("AutoencoderKLTemporalDecoder")))
    z = codec.encode(_media((3, 3, 8, 8)))  # (2, 4, 3, 4, 4)
    both = codec.decode(z)
    torch.testing.assert_close(both[1:], codec.decode(z[1:]), rtol=1e-5, atol=1e-6)
    mixed = codec.model.decode(z.transpose(1, 2).flatten(0, 1), num_frames=6).sample  # the two clips as one
    assert not torch.allclose(mixed.unflatten(0, (2, 3)).transpose(1, 2), both, atol=1e-4)


def test_oobleck_with_the_waveform_adapter(folders, tmp_path):
    codec = DiffusersCodec(str(folders("AutoencoderOobleck")))
    adapter = WaveformAdapter(
        sample_rate=16000,
        duration=0.01,
        sample_multiple=codec.layout.space * 2,
        preview_n_fft=128,  # previews of these 10 ms clips
        preview_hop_length=32,
        preview_n_mels=16,
    )
    assert adapter.sample_shape() == (1, 160) and adapter.sample_shape(0.0005) == (1, 16)
    assert codec.latent_shape(adapter.sample_shape()) == (2, 20)
    audio = torch.sin(torch.arange(2 * 170).reshape(2, 1, 170) * 0.3) * 0.5
    x, conditions = adapter.encode({"audio": audio})
    assert x.shape == (2, 1, 160) and conditions == {} and torch.equal(x, audio[..., :160])
    z = codec.encode(x)
    assert z.shape == (2, 2, 20)
    items = adapter.decode(codec.decode(z) * 10)  # a decoder may overshoot: clips are clamped to [-1, 1]
    assert [tuple(i.shape) for i in items] == [(1, 160)] * 2 and max(i.abs().max() for i in items) <= 1
    paths = adapter.write(items, tmp_path, "clip")
    assert [p.name for p in paths] == ["clip_000.wav", "clip_001.wav"]
    torch.testing.assert_close(load_audio(paths[0], 16000, 1), items[0], atol=1e-4, rtol=0)
    init = adapter.load_init(paths[0], length=0.0157)  # 251 samples, rounded down to 240: a multiple of 16
    assert init.shape == (1, 240) and torch.allclose(init[:, :160], items[0], atol=1e-4) and init[:, 160:].eq(0).all()
    mask = adapter.range_mask((1, 1, 160), 0.0025, 0.005)
    assert mask.shape == (1, 1, 160) and mask.sum() == 40 and mask[0, 0, 40] == 1 and mask[0, 0, 39] == 0
    assert adapter.preview(items, tmp_path / "p.png", ["a", "b"]).stat().st_size > 0
    with pytest.raises(ValueError, match="shorter than sample_multiple=16"):
        adapter.encode({"audio": audio[..., :8]})


def test_the_adapter_config_builds():
    from hydra.utils import instantiate

    cfg = OmegaConf.create({"data": {"sample_rate": 44100, "duration": 1.0}})
    cfg.adapter = OmegaConf.load(ROOT / "conf" / "adapter" / "audio_waveform.yaml")
    adapter = instantiate(cfg.adapter)
    assert isinstance(adapter, WaveformAdapter) and adapter.sample_shape() == (1, 43008)  # 21 x 2048 samples


def test_options_dtype_tiling_variant(folders, tmp_path):
    folder = folders("AutoencoderKL")
    x = _media((3, 16, 16))
    reference = DiffusersCodec(str(folder)).encode(x)
    half = DiffusersCodec(str(folder), dtype="bfloat16")
    assert next(half.parameters()).dtype == torch.bfloat16 and half.encode(x).dtype == torch.float32
    torch.testing.assert_close(half.encode(x), reference, atol=0.1, rtol=0.1)
    tiled = DiffusersCodec(str(folder), tile=True)  # tiles of 8 pixels over 16
    assert tiled.model.use_tiling and tiled.encode(x).shape == reference.shape
    with pytest.raises(ValueError, match="dtype='float64': expected one of float32, float16, bfloat16"):
        DiffusersCodec(str(folder), dtype="float64")
    model = diffusers.AutoencoderKL.from_pretrained(folder)
    model.save_pretrained(tmp_path / "fp16", variant="fp16")  # diffusion_pytorch_model.fp16.safetensors alone
    torch.testing.assert_close(DiffusersCodec(str(tmp_path / "fp16")).encode(x), reference)


def test_folders_that_are_not_a_diffusers_autoencoder_are_refused(folders, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"stabilityai/sd-vae-ft-mse is not a folder: expected a diffusers"):
        DiffusersCodec("stabilityai/sd-vae-ft-mse")  # a hub name is never looked up
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty has no config.json: expected a diffusers autoencoder folder"):
        DiffusersCodec(str(tmp_path / "empty"))
    pipeline = tmp_path / "pipeline"
    (pipeline / "vae").mkdir(parents=True)
    (pipeline / "model_index.json").write_text("{}")
    (pipeline / "vae" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"is a diffusers pipeline: give its autoencoder, .*pipeline/vae\)$"):
        DiffusersCodec(str(pipeline))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad/config.json is not valid JSON"):
        DiffusersCodec(str(tmp_path / "bad"))
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ValueError, match=r"_class_name 'UNet2DModel' is not a supported .*AutoencoderKL, "):
        DiffusersCodec(str(tmp_path / "unet"))
    # pickle weights only: refused by name before anything reads them
    model = diffusers.AutoencoderKL.from_pretrained(folders("AutoencoderKL"))
    model.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    assert (tmp_path / "pickled" / "diffusion_pytorch_model.bin").is_file()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called on a pickle"))
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model.bin is a pickle weights file.*safetensors only"):
        DiffusersCodec(str(tmp_path / "pickled"))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    with pytest.raises(ValueError, match=r"noweights has no diffusion_pytorch_model.safetensors"):
        DiffusersCodec(str(tmp_path / "noweights"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folders("AutoencoderKL") / "config.json").read_text())
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=r"broken: diffusers could not load its AutoencoderKL \("):
        DiffusersCodec(str(broken))


def test_ltx_timestep_conditioned_decoder_decodes_clean_latents(tmp_path):
    """LTX-Video 0.9.1's decoder takes a timestep; latents from the encoder are clean, so it is given t = 0."""
    config = dict(MODELS["AutoencoderKLLTXVideo"], timestep_conditioning=True)
    diffusers.AutoencoderKLLTXVideo.from_config(config).save_pretrained(tmp_path / "ltx")
    codec = DiffusersCodec(str(tmp_path / "ltx"))
    assert "frames 1 + 4k -> 1 + k" in repr(codec)
    x = _media((3, 5, 16, 8))
    assert codec.decode(codec.encode(x)).shape == x.shape


def test_load_codec_takes_a_diffusers_folder(folders):
    from mmdiff.latent import load_codec

    codec = load_codec(folders("AutoencoderKLWan"))
    assert isinstance(codec, DiffusersCodec) and codec.layout.kind == "video" and codec.layout.time == 4
