"""The joint audio-video network: packed clips in and out, zero-initialised couplings, windowed cross-modal attention."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mmdiff.nn import JointUNet, UNet, clip_packing
from mmdiff.nn.blocks import CrossModalAttention

MELS, RATIO, RES, FRAMES = 8, 4, (8, 8), 8


def _nets(concat=True, levels=(1,), **extra):
    torch.manual_seed(0)
    common = {"channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attention_levels": (), "num_classes": 3}
    video = UNet(
        dims=3, in_channels=3, down_factor=(1, 2, 2), factorized=True, concat_channels=4 if concat else 0, **common
    )
    audio = UNet(dims=1, in_channels=MELS, concat_channels=MELS + 1 if concat else 0, **common)
    return JointUNet(video, audio, resolution=RES, audio_frames_per_frame=RATIO, coupling_levels=levels, **extra)


def _clip(batch=2, frames=FRAMES):
    layout = clip_packing(frames, 3, RES, MELS, RATIO)
    return layout, layout.pack(
        {"video": torch.randn(batch, 3, frames, *RES), "audio": torch.randn(batch, MELS, RATIO * frames)}
    )


def test_a_packed_clip_in_and_out_any_length():
    net = _nets()
    for frames in (4, 8, 12):
        layout, x = _clip(frames=frames)
        out = net(x, torch.rand(2), label=torch.tensor([0, 2]))
        assert out.shape == x.shape == (2, layout.size)
    with pytest.raises(ValueError, match="no whole number of frames"):
        net(torch.zeros(1, 1000), torch.rand(1))


@pytest.mark.parametrize("time_bias", [False, True])
def test_a_fresh_joint_net_is_the_two_nets_side_by_side(time_bias):
    """Couplings start at zero: each stream's output is its own U-Net's, exactly."""
    net = _nets(time_bias=time_bias)
    layout, x = _clip()
    t, label = torch.rand(2), torch.tensor([1, 0])
    known = net.packing(FRAMES, concat=True).pack(
        {"video": torch.randn(2, 4, FRAMES, *RES), "audio": torch.randn(2, MELS + 1, RATIO * FRAMES)}
    )
    out = layout.unpack(net(x, t, label=label, concat=known))
    parts, cparts = layout.unpack(x), net.packing(FRAMES, concat=True).unpack(known)
    torch.testing.assert_close(out["video"], net.video(parts["video"], t, label=label, concat=cparts["video"]))
    torch.testing.assert_close(out["audio"], net.audio(parts["audio"], t, label=label, concat=cparts["audio"]))


def _randomise_couplings(net):
    for module in (*net.video_from_audio.values(), *net.audio_from_video.values()):
        torch.nn.init.normal_(module.out.weight, std=0.5)


def test_streams_exchange_information_once_coupled():
    net = _nets()
    for p in (*net.video.out[-1].parameters(), *net.audio.out[-1].parameters()):
        torch.nn.init.normal_(p, std=0.1)  # zero-initialised output layers, made live
    _randomise_couplings(net)
    layout, x = _clip(batch=1)
    parts = layout.unpack(x)
    other = layout.pack({"video": parts["video"], "audio": torch.randn_like(parts["audio"])})  # change the audio only
    t = torch.rand(1)
    changed = layout.unpack(net(other, t))["video"] - layout.unpack(net(x, t))["video"]
    assert changed.abs().max() > 1e-4  # the video output listens to the audio


def test_cross_modal_attention_looks_only_near_in_time():
    """A video frame's output depends on the audio around its time, not on audio far away."""
    torch.manual_seed(0)
    block = CrossModalAttention(8, 6, heads=2, window=0.5)
    torch.nn.init.normal_(block.out.weight, std=0.5)
    video = torch.randn(1, 8, 8, 2, 2)  # (B, C, F=8, H, W)
    audio = torch.randn(1, 6, 32)  # 4 audio steps per frame
    changed_audio = audio.clone()
    changed_audio[..., 28:] = torch.randn(1, 6, 4)  # the last frame's audio only
    delta = (block(video, changed_audio, span=8) - block(video, audio, span=8)).abs().amax(dim=(0, 1, 3, 4))  # (F,)
    assert delta[-1] > 1e-3 and delta[-2] > 1e-3  # that frame and its neighbour (window 0.5 frame) hear it
    assert delta[:-2].max() == 0  # frames far away do not


def test_the_time_bias_tells_a_frame_from_its_neighbours():
    """Without positions, keys inside the window are alike to a query wherever they are; the learned relative-time
    bias (-slope * gap, 0 where intervals overlap) weights a frame's own keys above its neighbours'."""
    torch.manual_seed(0)
    plain = CrossModalAttention(8, 6, heads=2, window=1.0)
    biased = CrossModalAttention(8, 6, heads=2, window=1.0, time_bias=True)
    biased.load_state_dict(plain.state_dict(), strict=False)
    bias = biased.attention_bias(8, 32, 4, 1, 8.0, "cpu", torch.float32)  # video frames (4 positions) <- 4 audio/frame
    # frame 3 -> frame 3's audio, frame 4's (past the first step, which touches frame 3), frame 6's
    own, neighbour, far = bias[:, 4 * 3, 12:16], bias[:, 4 * 3, 17:20], bias[:, 4 * 3, 24:28]
    assert (own == 0).all() and (neighbour < 0).all() and torch.isinf(far).all()
    assert (neighbour[1] < neighbour[0]).all()  # heads start from broad to sharp
    for block in (plain, biased):
        torch.nn.init.normal_(block.out.weight, std=0.5)
    biased.out.load_state_dict(plain.out.state_dict())
    video, audio = torch.randn(1, 8, 8, 2, 2), torch.randn(1, 6, 32)
    changed = audio.clone()
    changed[..., 16:20] = torch.randn(1, 6, 4)  # frame 4's audio
    for block in (plain, biased):
        delta = (block(video, changed, span=8) - block(video, audio, span=8)).abs().amax(dim=(0, 1, 3, 4))  # (F,)
        block.ratio = (delta[3] / delta[4]).item()  # a neighbour's response against the frame's own
    assert biased.ratio < plain.ratio
    assert biased.slope.requires_grad and plain.slope is None


def test_mismatched_stages_and_levels_are_one_line_errors():
    common = {"channels": 8, "num_res_blocks": 1, "attention_levels": ()}
    video = UNet(dims=3, in_channels=3, channel_mult=(1, 2), down_factor=(1, 2, 2), factorized=True, **common)
    audio = UNet(dims=1, in_channels=MELS, channel_mult=(1, 2, 2), **common)
    with pytest.raises(ValueError, match="same stages"):
        JointUNet(video, audio)
    audio = UNet(dims=1, in_channels=MELS, channel_mult=(1, 2), **common)
    with pytest.raises(ValueError, match=r"coupling_levels \[3\]"):
        JointUNet(video, audio, coupling_levels=(3,))
    with pytest.raises(ValueError, match="3-D UNet"):
        JointUNet(audio, video)


def test_gradients_reach_both_streams_and_the_couplings():
    net = _nets()
    _randomise_couplings(net)
    _, x = _clip()
    net(x, torch.rand(2)).pow(2).mean().backward()
    for name in ("video.inp", "audio.inp", "video_from_audio", "audio_from_video"):
        grads = [p.grad for n, p in net.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None for g in grads), name


def test_the_joint_config_names_every_key_of_the_single_modality_nets():
    """``net.video.*`` / ``net.audio.*`` take any key of ``conf/net/unet3d.yaml`` / ``unet1d.yaml`` without Hydra's
    ``+`` (a key missing from the group's yaml is 'not in struct')."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "net"
    joint = OmegaConf.load(conf / "joint_unet.yaml")
    for stream, single in (("video", "unet3d.yaml"), ("audio", "unet1d.yaml")):
        missing = set(OmegaConf.load(conf / single)) - set(joint[stream])
        assert not missing, (stream, sorted(missing))
