"""Noise priors: frames that share part of their noise (PYoCo's mixed noise), in the loss and in sampling."""

import pytest
import torch
from _helpers import DATA, train_tiny_run

import mmdiff
from mmdiff.core import DiffusionLoss, DiffusionModel, sample, vp_cosine
from mmdiff.core.noise import NoiseSource, SharedNoise, shared_noise
from mmdiff.latent.adapter import LatentAdapter
from mmdiff.modalities.video.adapter import VideoAdapter


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_shared_noise_keeps_unit_variance_and_correlates_only_along_its_dims():
    white = torch.randn(20000, 2, 8, 3)  # (B, C, F, X)
    mixed = shared_noise(white, dims=(2,), share=0.6)
    assert abs(float(mixed.var()) - 1) < 0.02
    assert abs(correlation(mixed[:, 0, 1, 0], mixed[:, 0, 6, 0]) - 0.6) < 0.03  # two frames, same place
    assert abs(correlation(mixed[:, 0, 1, 0], mixed[:, 1, 6, 0])) < 0.03  # another channel
    assert abs(correlation(mixed[:, 0, 1, 0], mixed[:, 0, 6, 2])) < 0.03  # another place
    assert shared_noise(white, (2,), 0.0) is white
    with pytest.raises(ValueError, match=r"\[0, 1\), got 1.0"):
        shared_noise(white, (2,), 1.0)


def test_a_prior_maps_each_seeded_draw_so_samples_stay_batch_invariant():
    prior = SharedNoise(dims=(2,), share=0.5)
    like = torch.zeros(2, 3, 5, 4, 4)
    both = NoiseSource([7, 8], 2, prior=prior)(like)
    alone = NoiseSource([8], 1, prior=prior)(like[:1])
    torch.testing.assert_close(both[1:], alone)
    torch.testing.assert_close(both, prior(NoiseSource([7, 8], 2)(like)))


def gaussian_denoiser(scale: float, frames: int, share: float):
    """The exact denoiser of data ``N(0, scale^2)`` per element under noise ``sigma * shared_noise(white, (2,),
    share)`` for ``x (B, 1, frames)``: the noise covariance has eigenvalue ``1 - share + share * frames`` on the
    frames' mean and ``1 - share`` off it, and ``D = scale^2 (scale^2 + sigma^2 Sigma)^-1 x`` on each."""

    def denoise(x, sigma):
        s2 = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1) ** 2
        mean = x.double().mean(dim=2, keepdim=True)
        rest = x.double() - mean
        on_mean = scale**2 / (scale**2 + s2 * (1 - share + share * frames))
        off_mean = scale**2 / (scale**2 + s2 * (1 - share))
        return (on_mean * mean + off_mean * rest).float()

    return denoise


@pytest.mark.parametrize("sampler, steps", [("unipc", 30), ("euler_ancestral", 200)])
def test_sampling_from_the_training_prior_gives_the_data_and_white_noise_does_not(sampler, steps):
    scale, frames, share = 0.7, 6, 0.5
    denoiser = gaussian_denoiser(scale, frames, share)
    kwargs = dict(sampler=sampler, steps=steps, seed=0, sigma_max=80.0, sigma_min=0.002)
    x = sample(denoiser, (8000, 1, frames), noise_prior=SharedNoise((2,), share), **kwargs)
    assert abs(float(x.std()) - scale) < 0.03 * scale
    assert abs(float(x.mean(dim=2).std()) - scale / frames**0.5) < 0.05 * scale / frames**0.5  # frames independent
    white = sample(denoiser, (8000, 1, frames), **kwargs)  # the start the model was not trained for
    assert float(white.mean(dim=2).std()) < 0.7 * scale / frames**0.5


def test_the_loss_noises_with_the_prior_it_is_given():
    seen = []

    def net(x_t, t):
        seen.append(x_t)
        return torch.zeros_like(x_t)

    loss = DiffusionLoss(DiffusionModel(vp_cosine(), "v"))
    clean = torch.zeros(512, 1, 4, 2)
    loss(net, clean, generator=torch.Generator().manual_seed(0), noise_prior=SharedNoise((2,), 0.9))
    loss(net, clean, generator=torch.Generator().manual_seed(0))
    shared, white = seen
    assert correlation(shared[:, 0, 0], shared[:, 0, 3]) > 0.8
    assert abs(correlation(white[:, 0, 0], white[:, 0, 3])) < 0.15


def test_the_video_adapter_shares_noise_along_frames_and_a_latent_adapter_keeps_it():
    assert VideoAdapter().noise_prior is None
    adapter = VideoAdapter(frame_noise_share=0.4)
    assert (adapter.noise_prior.dims, adapter.noise_prior.share) == ((2,), 0.4)
    assert LatentAdapter(media=adapter, autoencoder="unused").noise_prior is adapter.noise_prior
    with pytest.raises(ValueError, match=r"adapter.frame_noise_share is a correlation in \[0, 1\), got 1.5"):
        VideoAdapter(frame_noise_share=1.5)


def test_a_run_trains_and_generates_with_its_adapters_prior(tmp_path, monkeypatch):
    from mmdiff import generation

    config = tmp_path / "video_config.yaml"  # the tiny video run, its frames sharing half their noise
    config.write_text(
        (DATA / "video_config.yaml").read_text().replace("gif: true", "gif: true\n  frame_noise_share: 0.5")
    )
    trained, sampled = [], []
    loss_call = DiffusionLoss.__call__

    def spy_loss(self, net, x0, **kwargs):
        trained.append(kwargs.get("noise_prior"))
        return loss_call(self, net, x0, **kwargs)

    monkeypatch.setattr(DiffusionLoss, "__call__", spy_loss)
    run = train_tiny_run(tmp_path / "run", config, steps=2)
    assert len(trained) == 2 and all(isinstance(p, SharedNoise) and p.share == 0.5 for p in trained)

    real_sample = generation.sample

    def spy_sample(*args, **kwargs):
        sampled.append(kwargs["noise_prior"])
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(generation, "sample", spy_sample)
    mmdiff.load(run, device="cpu").generate(1, steps=2, label=0, progress=False)
    assert isinstance(sampled[0], SharedNoise) and sampled[0].share == 0.5


def test_an_audio_video_adapter_shares_noise_between_the_frames_of_its_video_part_only():
    from mmdiff.modalities.audio.adapter import LogMelAdapter
    from mmdiff.modalities.av.adapter import AudioVideoAdapter

    audio = LogMelAdapter(sample_rate=8000, n_fft=256, hop_length=250, n_mels=8)  # 4 mel frames per video frame
    white_video = AudioVideoAdapter(VideoAdapter(num_frames=4, resolution=(4, 4), fps=8.0), audio)
    assert white_video.noise_prior is None
    adapter = AudioVideoAdapter(VideoAdapter(num_frames=4, resolution=(4, 4), fps=8.0, frame_noise_share=0.5), audio)
    layout = adapter.packing(4)
    white = torch.randn(3, layout.size)
    mixed = layout.unpack(adapter.noise_prior(white))
    torch.testing.assert_close(mixed["video"], shared_noise(layout.unpack(white)["video"], (2,), 0.5))
    torch.testing.assert_close(mixed["audio"], layout.unpack(white)["audio"])
