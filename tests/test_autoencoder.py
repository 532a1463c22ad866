"""The KL autoencoder (mmdiff.nn.Autoencoder) and its loss (mmdiff.latent.objective.AutoencoderLoss), on tiny
settings: shapes, the causal first-frame property, the loss terms, gradient routing with the discriminator,
batch-invariant noise and a few training steps."""

import pytest
import torch

from mmdiff.latent.objective import AutoencoderLoss
from mmdiff.nn import Autoencoder, UNet
from mmdiff.nn.blocks import Downsample, ResBlock, SpaceTimeConv, TemporalAttention, Upsample


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread, and far faster than on two when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _perturb(module: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Move every parameter off its init (zero-initialised temporal and residual parts included), seeded."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return module


def _video_ae(**kw) -> Autoencoder:
    options = dict(latent_channels=4, channels=8, channel_mult=(1, 2), down_factor=(1, 2, 2), factorized=True)
    return Autoencoder(3, 3, **{**options, **kw})


@pytest.mark.parametrize(
    ("dims", "shape", "kw", "latent"),
    [
        (1, (2, 16, 32), dict(channel_mult=(1, 2, 2)), (2, 4, 8)),
        (2, (2, 3, 16, 8), dict(down_factor=(2, 1)), (2, 4, 8, 8)),
        (3, (1, 3, 3, 8, 8), dict(down_factor=(1, 2, 2), factorized=True, attention=True), (1, 4, 3, 4, 4)),
        (3, (1, 3, 2, 8, 8), dict(down_factor=(1, 2, 2), attention=True), (1, 4, 2, 4, 4)),
    ],
)
def test_shapes_and_factors(dims, shape, kw, latent):
    ae = Autoencoder(dims, shape[1], latent_channels=4, channels=8, **{"channel_mult": (1, 2), **kw})
    x = torch.randn(shape)
    out = ae(x)
    assert ae.encode(x).shape == latent and ae.decode(ae.encode(x)).shape == shape
    assert out["recon"].shape == shape and out["mean"].shape == out["logvar"].shape == latent
    assert ae.latent_shape(shape[1:]) == latent[1:] and ae.media_shape(latent[1:]) == shape[1:]
    assert all(s // lat == f for s, lat, f in zip(shape[2:], latent[2:], ae.factors))


def test_latent_shape_round_trip_and_error():
    ae = Autoencoder(1, 128, channels=8)  # defaults: 8 latent channels, time factor 4
    assert ae.factors == (4,) and ae.latent_shape((128, 512)) == (8, 128) and ae.media_shape((8, 128)) == (128, 512)
    with pytest.raises(ValueError, match="axis 1.*not a multiple of 4"):
        ae.latent_shape((128, 510))
    video = _video_ae(channel_mult=(1, 2, 2, 2))
    assert video.factors == (1, 8, 8) and video.latent_shape((3, 5, 64, 32)) == (4, 5, 8, 4)
    with pytest.raises(ValueError, match="axis 3"):
        video.latent_shape((3, 5, 64, 36))
    with pytest.raises(ValueError, match="causal"):
        Autoencoder(3, 3, down_factor=2, causal=True)


@pytest.mark.parametrize("factorized", [True, False])
def test_causal_first_frame_alone_gives_the_first_latent_frame(factorized):
    torch.manual_seed(0)
    ae = _perturb(_video_ae(causal=True, attention=True, factorized=factorized))
    x = torch.randn(2, 3, 5, 8, 8)
    z = ae.encode(x)
    assert torch.allclose(ae.encode(x[:, :, :1]), z[:, :, :1], atol=1e-5)
    assert torch.allclose(ae.encode(x[:, :, :3]), z[:, :, :3], atol=1e-5)
    # decoding is causal too, and a later frame changes nothing before it
    y = x.clone()
    y[:, :, 3:] += 1.0
    assert torch.allclose(ae.encode(y)[:, :, :3], z[:, :, :3], atol=1e-5)
    assert not torch.allclose(ae.encode(y)[:, :, 3:], z[:, :, 3:], atol=1e-3)
    # the non-causal network looks ahead: the same check fails there (the test can fail)
    plain = _perturb(_video_ae(attention=True, factorized=factorized))
    assert not torch.allclose(plain.encode(x[:, :, :1]), plain.encode(x)[:, :, :1], atol=1e-4)


def test_new_block_options_keep_existing_modules():
    """The U-Net's blocks keep their state-dict keys; new options only add behaviour when asked for."""
    assert set(ResBlock(1, 8, 8, 16).state_dict()) >= {"emb.weight", "emb.bias"}
    assert "emb.weight" not in ResBlock(1, 8, 8, 0).state_dict()
    assert set(SpaceTimeConv(4, 4).state_dict()) == {
        "spatial.weight",
        "spatial.bias",
        "temporal.weight",
        "temporal.bias",
    }
    keys = set(
        UNet(
            dims=3,
            in_channels=3,
            channels=8,
            channel_mult=(1, 2),
            attention_levels=(1,),
            num_res_blocks=1,
            down_factor=(1, 2, 2),
            factorized=True,
        ).state_dict()
    )
    assert not any("temporal.conv." in k for k in keys)
    x = torch.randn(1, 8, 4, 2, 2)
    att = _perturb(TemporalAttention(8, 2, causal=True))
    assert torch.allclose(att(x[:, :, :2]), att(x)[:, :, :2], atol=1e-5)


def test_norm_groups_sets_the_group_count_and_keeps_the_keys():
    """``norm_groups`` caps the GroupNorm groups (32 by default: with 8 or 16 channels each channel is its own
    group, instance normalisation); the parameters are the same, so a run trained either way loads into the other."""
    default, grouped = _video_ae(), _video_ae(norm_groups=2)
    norms = [m for m in grouped.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 2 for m in norms)
    assert {m.num_groups for m in default.modules() if isinstance(m, torch.nn.GroupNorm)} == {8, 16}
    assert set(default.state_dict()) == set(grouped.state_dict())
    unet = UNet(dims=1, in_channels=4, channels=8, channel_mult=(1, 2), attention_levels=(), norm_groups=4)
    assert {m.num_groups for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)} == {4}


def test_shortcut_sampling_blocks_are_pool_and_nearest_plus_a_convolution():
    """DC-AE's parameter-free paths (Chen et al. 2024): with its convolution zeroed, a shortcut Downsample is the
    average pool and a shortcut Upsample the nearest-neighbour upsampling."""
    x = torch.randn(2, 4, 3, 8, 8)
    down, up = Downsample(3, 4, (1, 2, 2), shortcut=True), Upsample(3, 4, (1, 2, 2), factorized=True, shortcut=True)
    plain = Downsample(3, 4, (1, 2, 2))
    plain.load_state_dict(down.state_dict())  # no new parameters
    assert torch.allclose(down(x) - plain(x), torch.nn.functional.avg_pool3d(x, (1, 2, 2)), atol=1e-6)
    for module in (down, up):
        for p in module.parameters():
            torch.nn.init.zeros_(p)
    assert torch.allclose(down(x), torch.nn.functional.avg_pool3d(x, (1, 2, 2)))
    assert torch.equal(up(x), torch.nn.functional.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


def test_shortcuts_carry_the_latent_and_keep_causality_and_keys():
    torch.manual_seed(0)
    ae = _perturb(_video_ae(causal=True, shortcuts=True, norm_groups=2))
    assert set(ae.state_dict()) == set(_video_ae(causal=True).state_dict())
    x = torch.randn(2, 3, 4, 8, 8)
    z = ae.encode(x)
    assert torch.allclose(ae.encode(x[:, :, :1]), z[:, :, :1], atol=1e-5)
    with torch.no_grad():
        plain = _video_ae(causal=True, norm_groups=2)
        plain.load_state_dict(ae.state_dict())
    assert not torch.allclose(ae.encode(x), plain.encode(x), atol=1e-4)  # the shortcuts are on the paths
    assert not torch.allclose(ae.decode(z), plain.decode(z), atol=1e-4)
    with pytest.raises(ValueError, match="width 16 must be a multiple of latent_channels"):
        _video_ae(latent_channels=3, shortcuts=True)


def _loss_terms(loss, net, x):
    total = loss(net, x, generator=torch.Generator().manual_seed(0))
    return total, dict(loss.last_terms)


def test_loss_terms_are_finite_and_each_weight_counts():
    torch.manual_seed(0)
    audio = Autoencoder(1, 16, latent_channels=4, channels=8, channel_mult=(1, 2))
    x = torch.randn(3, 16, 16) * 0.5
    full = AutoencoderLoss(kl_weight=1e-2, spectral_weight=1.0, spectral_scales=(1, 2, 4), gradient_weight=1.0)
    total, terms = _loss_terms(full, audio, x)
    assert total.shape == (3,) and torch.isfinite(total).all()
    assert set(terms) == {"l1", "kl", "spectral", "gradient", "total"}
    assert all(torch.isfinite(v) and v.ndim == 0 and not v.requires_grad for v in terms.values())
    assert all(float(terms[k]) > 0 for k in ("l1", "kl", "spectral", "gradient"))
    for name in ("l1_weight", "kl_weight", "spectral_weight", "gradient_weight"):
        changed = AutoencoderLoss(
            **{"kl_weight": 1e-2, "spectral_weight": 1.0, "spectral_scales": (1, 2, 4), "gradient_weight": 1.0}
            | {name: 2 * getattr(full, name)}
        )
        assert not torch.allclose(_loss_terms(changed, audio, x)[0], total), name
    # the spectral term is zero for a perfect reconstruction and sees a loudness error that L1 of logs weighs alike
    from mmdiff.latent.objective import spectral_terms

    assert torch.allclose(spectral_terms(x, x, 4.5, (1, 2)), torch.zeros(3), atol=1e-6)
    with pytest.raises(ValueError, match="log-mels"):
        AutoencoderLoss(spectral_weight=1.0)(_video_ae(), torch.randn(1, 3, 2, 8, 8))


def test_video_gradient_term_and_ignored_conditions():
    ae = _video_ae()
    x = torch.rand(2, 3, 3, 8, 8) * 2 - 1
    loss = AutoencoderLoss(gradient_weight=1.0)
    a = loss(ae, x, generator=torch.Generator().manual_seed(0), concat=torch.zeros(2, 4, 3, 8, 8), label=None)
    b = loss(ae, x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and "gradient" in loss.last_terms


def test_discriminator_gradients_are_routed():
    torch.manual_seed(0)
    ae = Autoencoder(1, 8, latent_channels=4, channels=8, channel_mult=(1, 2), discriminator_channels=8)
    assert any(k.startswith("discriminator.") for k in ae.state_dict())
    x = torch.randn(2, 8, 16)
    out = ae(x, generator=torch.Generator().manual_seed(0))
    assert out["logits_fake"].shape[:2] == (2, 1)
    autoencoder_params = [p for n, p in ae.named_parameters() if not n.startswith("discriminator.")]
    d_params = list(ae.discriminator.parameters())

    def grads(value):
        ae.zero_grad(set_to_none=True)
        value.sum().backward(retain_graph=True)
        has = lambda ps: any(p.grad is not None and p.grad.abs().sum() > 0 for p in ps)  # noqa: E731
        return has(autoencoder_params), has(d_params)

    assert grads(-out["logits_fake"].mean()) == (True, False)  # generator loss: autoencoder only
    assert grads(out["logits_fake_d"].mean() - out["logits_real"].mean()) == (False, True)  # discriminator only
    loss = AutoencoderLoss(adversarial_weight=0.5)
    assert grads(loss(ae, x)) == (True, True) and {"generator", "discriminator"} <= set(loss.last_terms)
    with pytest.raises(ValueError, match="discriminator_channels"):
        AutoencoderLoss(adversarial_weight=0.5)(Autoencoder(1, 8, channels=8, channel_mult=(1, 2)), x)


def test_per_sample_generators_make_the_loss_batch_invariant():
    torch.manual_seed(0)
    ae = _perturb(_video_ae(causal=True, discriminator_channels=8))
    loss = AutoencoderLoss(gradient_weight=1.0, kl_weight=1e-3, adversarial_weight=0.1)
    x = torch.randn(3, 3, 2, 8, 8)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    batch = loss(ae, x, generator=gens([5, 6, 7]))
    alone = loss(ae, x[1:2], generator=gens([6]))
    assert torch.allclose(batch[1:2], alone, atol=1e-5)
    assert not torch.allclose(loss(ae, x[1:2], generator=gens([9])), alone, atol=1e-7)  # the noise is used


def test_decoder_noise_changes_training_only_and_stays_batch_invariant():
    torch.manual_seed(0)
    noisy = _perturb(_video_ae(causal=True, decoder_noise=0.5))
    plain = _video_ae(causal=True)
    plain.load_state_dict(noisy.state_dict())
    x = torch.randn(3, 3, 2, 8, 8)
    assert torch.equal(noisy.encode(x), plain.encode(x))
    assert torch.equal(noisy.decode(noisy.encode(x)), plain.decode(plain.encode(x)))
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    batch = noisy(x, generator=gens([5, 6, 7]))["recon"]
    assert torch.allclose(noisy(x[1:2], generator=gens([6]))["recon"], batch[1:2], atol=1e-5)
    # the same posterior draw (the same generators), and then the extra noise
    assert not torch.allclose(batch, plain(x, generator=gens([5, 6, 7]))["recon"], atol=1e-4)


def test_a_few_steps_reduce_the_loss_and_reconstruct():
    torch.manual_seed(0)
    ae = Autoencoder(1, 16, latent_channels=4, channels=16, channel_mult=(1, 2))
    x = torch.randn(4, 16, 16).cumsum(-1) * 0.1  # smooth in time
    loss = AutoencoderLoss(spectral_weight=0.5, spectral_scales=(1, 2))
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    values = []
    for _ in range(30):
        value = loss(ae, x, generator=torch.Generator().manual_seed(0)).mean()
        values.append(value.item())
        opt.zero_grad()
        value.backward()
        opt.step()
    assert values[-1] < 0.7 * values[0]
    wrapped = torch.nn.Module()
    wrapped.module = ae  # as DistributedDataParallel holds it
    recon = loss.reconstruct(wrapped, x)
    assert recon.shape == x.shape and not recon.requires_grad
    assert torch.equal(recon, ae.decode(ae.encode(x)))
