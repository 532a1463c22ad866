"""Device placement and host syncs, checked without a GPU.

* On the ``meta`` device a tensor has a device, a shape and a dtype but no data: reading a value (``.item()``,
  ``bool()``, ``.tolist()``, ``.cpu()``) raises, and so does most arithmetic that mixes a CPU tensor into a meta one,
  as it would on CUDA. :class:`DeviceAudit` also catches what meta lets through (indexing a CPU table with meta
  indices returns a CPU tensor instead of failing as CUDA does) by looking at every operation's tensors.
* On the CPU, :class:`DeviceAudit` lists the operations that read a value back to the host or whose output shape
  depends on the data: each of them makes the host wait for the GPU when run there.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mmdiff.core import (
    DiffusionLoss,
    DiffusionModel,
    LogitNormalTime,
    LogNormalSigma,
    UniformTime,
    VPSchedule,
    classifier_free_guidance,
    drop_conditions,
    sample,
    vp_cosine,
)
from mmdiff.core.schedules import precise_dtype
from mmdiff.nn import UNet

META = torch.device("meta")

#: Operations that make the host wait for the device: a value read back, or an output shaped by the data.
SYNC_OPS = {"_local_scalar_dense", "equal", "is_nonzero", "nonzero", "masked_select", "_unique2", "unique_dim"}


class DeviceAudit(TorchDispatchMode):
    """Records, for every ATen operation run inside it, what a GPU would object to.

    * ``mixed``: operations whose tensors (inputs and outputs, 0-d scalars excepted) sit on more than one device;
    * ``copies``: copies between devices (``.to(device)`` of a tensor made elsewhere);
    * ``syncs``: operations from :data:`SYNC_OPS` with the device types of their tensors.
    """

    def __init__(self):
        super().__init__()
        self.mixed: list[str] = []
        self.copies: list[str] = []
        self.syncs: list[tuple[str, set[str]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        devices = {t.device.type for t in tensors if t.ndim > 0}
        name = func.overloadpacket.__name__
        if len(devices) > 1:
            (self.copies if name in ("_to_copy", "copy_") else self.mixed).append(f"{name} {sorted(devices)}")
        if name in SYNC_OPS:
            self.syncs.append((name, {t.device.type for t in tensors}))
        return out

    def device_syncs(self) -> list[str]:
        """Sync operations on tensors off the CPU (host-side maths on the CPU sigma list is free by design)."""
        return [name for name, devices in self.syncs if devices - {"cpu"}]


def tiny_unet(dims: int, device: torch.device | str) -> UNet:
    """A class-conditional (3 classes + null) U-Net of a few thousand weights; 3-D is the factorised video network
    with known-frame channels."""
    video = dict(factorized=True, down_factor=(1, 2, 2), concat_channels=2) if dims == 3 else {}
    net = UNet(
        dims=dims,
        in_channels=4,
        channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_classes=3,
        **video,
    )
    return net.to(device)


SHAPES = {1: (2, 4, 16), 3: (2, 4, 4, 8, 8)}  # audio (B, C, T), video (B, C, F, H, W)


def labels(device) -> torch.Tensor:
    return torch.tensor([0, 3], device=device)  # one class, one null label


# -- meta: every tensor a step makes sits on the model's device ---------------------------------------------------


def test_schedule_lookups_follow_the_input_device(schedule):
    schedule.sigma_at(torch.rand(5, device=META))  # copies a VP table to meta once (see the next test)
    sigma = torch.rand(5, device=META) * 10
    with DeviceAudit() as audit:
        results = {
            "sigma_at": schedule.sigma_at(torch.rand(5, device=META, dtype=torch.float64)),
            "net_time": schedule.net_time(sigma),
            "input_scale": schedule.input_scale(sigma),
            "sigma_from_net_time": schedule.sigma_from_net_time(schedule.net_time(sigma)),
        }
        if isinstance(schedule, VPSchedule):
            results["sigma_at_timestep"] = schedule.sigma_at_timestep(torch.rand(5, device=META) * 999)
            results["timestep_of_sigma"] = schedule.timestep_of_sigma(sigma)
    assert {name: r.device for name, r in results.items()} == {name: META for name in results}
    assert audit.mixed == [] and audit.copies == [] and audit.device_syncs() == []
    assert results["net_time"].dtype == torch.float32  # the network's time input keeps the caller's dtype


def test_vp_table_is_copied_to_a_device_once_and_kept_there():
    schedule = vp_cosine()
    with DeviceAudit() as first:
        schedule.net_time(torch.ones(3, device=META))
    with DeviceAudit() as second:
        schedule.net_time(torch.ones(3, device=META))
        schedule.sigma_at(torch.rand(3, device=META))
    assert first.copies == ["_to_copy ['cpu', 'meta']"]  # the log-sigma table, once
    assert second.copies == []
    assert schedule.log_sigma_table(META).dtype == torch.float64
    assert precise_dtype("mps") == torch.float32 and precise_dtype("cuda") == torch.float64  # mps has no float64


@pytest.mark.parametrize("dims", [1, 3])
def test_unet_forward_with_labels_stays_on_the_device(dims):
    net = tiny_unet(dims, META)
    x = torch.randn(SHAPES[dims], device=META)
    concat = {"concat": torch.zeros(2, 2, *x.shape[2:], device=META)} if dims == 3 else {}
    with DeviceAudit() as audit:
        out = net(x, torch.rand(2, device=META) * 999, label=labels(META), **concat)
    assert out.shape == x.shape and out.device == META
    assert audit.mixed == [] and audit.copies == [] and audit.device_syncs() == []


@pytest.mark.parametrize(
    ("noise_level", "weighting", "parameterization"),
    [(UniformTime(), "min_snr", "v"), (LogitNormalTime(), "uniform", "flow"), (LogNormalSigma(), "soft_min_snr", "x0")],
)
def test_training_step_stays_on_the_device(noise_level, weighting, parameterization):
    net = tiny_unet(1, META)
    model = DiffusionModel(vp_cosine(), parameterization)
    loss_fn = DiffusionLoss(model, noise_level=noise_level, weighting=weighting, offset_noise=0.1)
    model.schedule.log_sigma_table(META)  # the one-time table copy, tested above
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x0 = torch.randn(SHAPES[1], device=META)
    with DeviceAudit() as audit:
        cond = drop_conditions({"label": labels(META)}, {"label": 3}, p=0.5)
        loss = loss_fn(net, x0, **cond)  # (B,)
        loss.mean().backward()
        optimizer.step()
    assert loss.shape == (2,) and loss.device == META
    assert all(p.grad.device == META for p in net.parameters())
    assert audit.mixed == [] and audit.copies == [] and audit.device_syncs() == []


@pytest.mark.parametrize("sampler", ["euler", "heun", "ddpm", "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_sampler_with_guidance_and_a_mask_stays_on_the_device(sampler):
    net = tiny_unet(1, META)
    model = DiffusionModel(vp_cosine(), "v")
    model.schedule.log_sigma_table(META)
    init = torch.randn(SHAPES[1], device=META)
    mask = torch.zeros(SHAPES[1], device=META)
    with DeviceAudit() as audit:
        out = sample(
            model.denoiser(net),
            SHAPES[1],
            sampler=sampler,
            steps=3,
            seed=None,  # the global generator of the device: meta has no torch.Generator
            schedule=model.schedule,
            device=META,
            cond={"label": labels(META)},
            guidance_scale=2.0,
            null_cond={"label": 3},
            guidance_rescale=0.5,
            init=init,
            mask=mask,
        )
    assert out.shape == SHAPES[1] and out.device == META
    # the sigma list is CPU float64 and read on the host by design; nothing mixes it into the device's tensors
    assert audit.mixed == [] and audit.copies == [] and audit.device_syncs() == []


# -- CPU: no forward pass or loss makes the host wait ---------------------------------------------------------------


@pytest.mark.parametrize("dims", [1, 3])
def test_forward_loss_and_guidance_read_nothing_back_to_the_host(dims):
    torch.manual_seed(0)
    net = tiny_unet(dims, "cpu")
    model = DiffusionModel(vp_cosine(), "epsilon")
    x0 = torch.randn(SHAPES[dims])
    guided = classifier_free_guidance(model.denoiser(net), 3.0, {"label": 3}, rescale=0.7)
    with DeviceAudit() as audit:
        loss = DiffusionLoss(model, weighting="min_snr", offset_noise=0.1)(net, x0, label=labels("cpu"))
        loss.mean().backward()
        with torch.no_grad():
            guided(x0, torch.tensor([0.5, 30.0]), label=labels("cpu"))
    assert torch.isfinite(loss).all()
    assert [name for name, _ in audit.syncs] == []


def test_a_guidance_interval_is_the_only_guidance_that_reads_sigma_on_the_host():
    net = tiny_unet(1, "cpu")
    denoiser = DiffusionModel(vp_cosine(), "v").denoiser(net)
    x, sigma = torch.randn(SHAPES[1]), torch.tensor([0.5, 30.0])
    outside = classifier_free_guidance(denoiser, 3.0, {"label": 3}, interval=(100.0, 200.0))
    with DeviceAudit() as audit, torch.no_grad():
        skipped = outside(x, sigma, label=labels("cpu"))
    assert [name for name, _ in audit.syncs] == ["_local_scalar_dense"]  # one read decides to skip the null pass
    torch.testing.assert_close(skipped, denoiser(x, sigma, label=labels("cpu")))


# -- torch.compile: the network is one graph --------------------------------------------------------------------------


def test_unet_compiles_to_one_graph():
    torch._dynamo.reset()
    net = tiny_unet(1, "cpu").eval()
    x, t = torch.randn(SHAPES[1]), torch.tensor([3.0, 900.0])
    compiled = torch.compile(net, backend="eager", fullgraph=True)  # fullgraph: any graph break raises
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, t, label=labels("cpu")), net(x, t, label=labels("cpu")))
    torch._dynamo.reset()
