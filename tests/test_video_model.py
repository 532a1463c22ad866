"""The video network and adapter: factorised space-time blocks, known-frame conditioning, shapes."""

import pytest
import torch
from _helpers import train_tiny_run

import mmdiff
from mmdiff.modalities.video.adapter import VideoAdapter
from mmdiff.nn import UNet
from mmdiff.nn.blocks import Attention, FrameGroupNorm, ResBlock, SpatialAttention, TemporalAttention


def video_unet(**kw):
    torch.manual_seed(0)
    args = dict(
        dims=3,
        in_channels=3,
        channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_classes=3,
        down_factor=(1, 2, 2),
        factorized=True,
        concat_channels=4,
    )
    return UNet(**{**args, **kw})


def test_video_unet_shapes_non_square_and_longer_clips():
    net = video_unet()
    for shape in [(2, 3, 4, 8, 8), (1, 3, 9, 8, 12)]:  # any frame count; H, W multiples of 2
        out = net(torch.randn(shape), torch.tensor([5.0] * shape[0]), label=torch.zeros(shape[0], dtype=torch.long))
        assert out.shape == shape
    with pytest.raises(ValueError, match="must be a multiple"):
        net(torch.randn(1, 3, 4, 7, 8), torch.tensor([5.0]))


def test_temporal_parts_start_at_zero_so_a_fresh_net_works_frame_by_frame():
    net = video_unet()
    torch.nn.init.normal_(net.out[-1].spatial.weight)  # let the (zero-initialised) output layer pass something
    for block in net.modules():  # and the spatial residual branches
        if isinstance(block, torch.nn.Conv3d) and block.kernel_size[0] == 1 and block.weight.abs().sum() == 0:
            torch.nn.init.normal_(block.weight, std=0.1)
    x = torch.randn(1, 3, 5, 8, 8)
    t = torch.tensor([100.0])
    base = net(x, t)
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change frame 0 only
    diff = (net(x2, t) - base).abs().sum(dim=(0, 1, 3, 4))  # (F,)
    assert diff[0] > 1e-3 and torch.all(diff[1:] < 1e-5)
    # once the temporal attention output is non-zero, frames talk to each other
    for m in net.modules():
        if isinstance(m, TemporalAttention):
            torch.nn.init.normal_(m.out.weight, std=0.1)
    diff = (net(x2, t) - net(x, t)).abs().sum(dim=(0, 1, 3, 4))
    assert torch.all(diff[1:] > 1e-5)


def test_clip_norm_lets_the_frames_share_statistics_from_the_start():
    """``frame_norm=False``: GroupNorm over the whole clip, so even a fresh net (temporal parts at zero) passes a change
    of one frame to the others through the shared statistics; the parameters are the same as per-frame norms'."""
    per_frame, clip = video_unet(), video_unet(frame_norm=False)
    assert any(isinstance(m, FrameGroupNorm) for m in per_frame.modules())
    norms = [m for m in clip.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and not any(isinstance(m, FrameGroupNorm) for m in norms)
    assert per_frame.state_dict().keys() == clip.state_dict().keys()
    torch.nn.init.normal_(clip.out[-1].spatial.weight)  # let the (zero-initialised) output layer pass something
    x = torch.randn(1, 3, 5, 8, 8)
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change frame 0 only
    t = torch.tensor([100.0])
    diff = (clip(x2, t) - clip(x, t)).abs().sum(dim=(0, 1, 3, 4))  # (F,)
    assert torch.all(diff[1:] > 1e-5)


def test_clip_attention_levels_attend_over_the_whole_clip():
    """``clip_attention_levels``: at those levels (and in the middle block, which follows the lowest) one attention
    over frames x height x width replaces spatial + temporal attention; it starts at zero like the temporal parts, so
    a fresh net still works frame by frame, and once it passes something a change of frame 0 reaches every frame."""
    net = video_unet(clip_attention_levels=(1,))
    kinds = {type(m) for m in net.modules()}
    assert Attention in kinds and SpatialAttention not in kinds and TemporalAttention not in kinds
    assert any(type(m) is Attention for m in net.mid)
    torch.nn.init.normal_(net.out[-1].spatial.weight)  # let the (zero-initialised) output layer pass something
    for block in net.modules():  # and the spatial residual branches
        if isinstance(block, torch.nn.Conv3d) and block.kernel_size[0] == 1 and block.weight.abs().sum() == 0:
            torch.nn.init.normal_(block.weight, std=0.1)
    x, t = torch.randn(1, 3, 5, 8, 8), torch.tensor([100.0])
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change frame 0 only
    diff = (net(x2, t) - net(x, t)).abs().sum(dim=(0, 1, 3, 4))  # (F,)
    assert diff[0] > 1e-3 and torch.all(diff[1:] < 1e-5)
    for m in net.modules():
        if type(m) is Attention:
            torch.nn.init.normal_(m.out.weight, std=0.1)
    diff = (net(x2, t) - net(x, t)).abs().sum(dim=(0, 1, 3, 4))
    assert torch.all(diff[1:] > 1e-5)
    both = video_unet(attention_levels=(0, 1), clip_attention_levels=(1,))  # level 0 stays factorised
    assert any(isinstance(m, TemporalAttention) for m in both.modules())
    with pytest.raises(ValueError, match="among the attention_levels"):
        video_unet(clip_attention_levels=(0,))
    with pytest.raises(ValueError, match="only for factorised video nets"):
        video_unet(factorized=False, clip_attention_levels=(1,))


def test_positions_start_at_zero_and_then_tell_frames_and_places_apart():
    """``positions``: each position's (frame, y, x) index is added after the input convolution through a
    zero-initialised layer, so a fresh net computes exactly what the net without it does; once the layer is non-zero,
    a clip that is the same in every frame gives different frames out (a fresh factorised net cannot: nothing in it
    knows a frame's index), and any clip length works."""
    plain, placed = video_unet(), video_unet(positions=True)
    assert set(placed.state_dict()) - set(plain.state_dict()) == {"position.proj.weight", "position.proj.bias"}
    placed.load_state_dict(plain.state_dict(), strict=False)
    torch.nn.init.normal_(plain.out[-1].spatial.weight)  # let the (zero-initialised) output layer pass something
    placed.out[-1].spatial.weight.data.copy_(plain.out[-1].spatial.weight)
    still = torch.randn(1, 3, 1, 8, 8).expand(1, 3, 6, 8, 8).contiguous()  # (B, C, F, H, W): one frame, six times
    t = torch.tensor([100.0])
    torch.testing.assert_close(placed(still, t), plain(still, t))
    out = plain(still, t)
    assert (out - out[:, :, :1]).abs().max() < 1e-5  # every frame the same
    torch.nn.init.normal_(placed.position.proj.weight, std=0.1)
    out = placed(still, t)
    assert (out[:, :, 1:-1] - out[:, :, 2:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-4  # inner frames differ too
    assert placed(torch.randn(1, 3, 11, 8, 16), t).shape == (1, 3, 11, 8, 16)  # any clip length and frame size


def test_frame_embedding_starts_at_zero_then_gives_each_frame_its_own_scale_and_shift():
    """``frame_embedding``: each frame's index joins the timestep embedding through a zero-initialised layer, so a fresh
    net computes what the net without it does; once non-zero, a clip that is the same in every frame gives different
    frames out, and how they differ depends on the label (a product of condition and frame, what "moving left"
    needs). Any clip length works; a net that halves its frames cannot have it."""
    plain, framed = video_unet(), video_unet(frame_embedding=True)
    assert set(framed.state_dict()) - set(plain.state_dict()) == {
        "frame_embedding.proj.weight",
        "frame_embedding.proj.bias",
    }
    torch.nn.init.normal_(plain.out[-1].spatial.weight)  # let the (zero-initialised) output layer pass something
    for block in plain.modules():  # and the residual blocks' second convolutions
        if isinstance(block, ResBlock):
            block.conv2.spatial.weight.data.normal_(std=0.1)
    framed.load_state_dict(plain.state_dict(), strict=False)
    still = torch.randn(1, 3, 1, 8, 8).expand(1, 3, 6, 8, 8).contiguous()  # (B, C, F, H, W): one frame, six times
    t = torch.tensor([100.0])
    fresh = framed(still, t, label=torch.tensor([0]))
    torch.testing.assert_close(fresh, plain(still, t, label=torch.tensor([0])), rtol=1e-4, atol=1e-4)  # float32 order
    assert (fresh - fresh[:, :, :1]).abs().max() < 1e-5  # every frame the same
    torch.nn.init.normal_(framed.frame_embedding.proj.weight, std=0.5)
    by_label = [framed(still, t, label=torch.tensor([k])) for k in (0, 1)]
    for out in by_label:
        assert (out[:, :, 1:-1] - out[:, :, 2:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-4  # inner frames differ
    change = [out[:, :, 1:] - out[:, :, :-1] for out in by_label]  # (B, C, F-1, H, W): how the frames differ
    assert (change[0] - change[1]).abs().max() > 1e-4  # and how depends on the label
    assert framed(torch.randn(1, 3, 11, 8, 16), t).shape == (1, 3, 11, 8, 16)
    with pytest.raises(ValueError, match=r"frame_embedding.*down_factor=\[2, 2, 2\]"):
        video_unet(frame_embedding=True, down_factor=2)
    with pytest.raises(ValueError, match="frame_embedding.*dims=2"):
        UNet(dims=2, in_channels=3, channels=16, frame_embedding=True)


def test_attention_at_a_level_the_net_lacks_is_an_error():
    """A level beyond ``channel_mult`` would silently get no attention (a net shrunk by ``net.channel_mult=[1,2]``
    under a recipe's ``attention_levels: [1, 2]``): the error names the key, the missing level and the net's levels."""
    with pytest.raises(ValueError, match=r"net.attention_levels=\[1, 2\]: level\(s\) \[2\] do not exist.*0..1"):
        video_unet(attention_levels=(1, 2))
    with pytest.raises(ValueError, match=r"net.cross_attention_levels=\[3\]"):
        video_unet(context_dim=8, cross_attention_levels=(3,))
    video_unet(context_dim=8, attention_levels=(), cross_attention_levels=(0, 1))  # every level the net has: fine


def test_missing_concat_means_no_known_frames():
    net = video_unet()
    x, t = torch.randn(2, 3, 4, 8, 8), torch.tensor([3.0, 300.0])
    torch.testing.assert_close(net(x, t), net(x, t, concat=torch.zeros(2, 4, 4, 8, 8)))
    with pytest.raises(ValueError, match="concat must have 4 channels"):
        net(x, t, concat=torch.zeros(2, 3, 4, 8, 8))


def test_temporal_attention_relative_bias_is_clamped():
    att = TemporalAttention(8, heads=2, max_distance=2)
    assert att.bias.num_embeddings == 5
    out = att(torch.randn(1, 8, 7, 2, 2))  # 7 frames: offsets up to 6 share the |offset| >= 2 biases
    assert out.shape == (1, 8, 7, 2, 2)


def test_video_adapter_encode_known_frames_and_shapes():
    adapter = VideoAdapter(num_frames=6, resolution=(8, 12), known_frames=0.5, max_known=3)
    video = torch.rand(64, 3, 6, 8, 12)
    gens = [torch.Generator().manual_seed(i) for i in range(64)]
    x0, cond = adapter.encode({"video": video, "label": torch.zeros(64, dtype=torch.long)}, generator=gens)
    assert x0.shape == (64, 3, 6, 8, 12) and x0.min() >= -1 and x0.max() <= 1
    mask = cond["concat"][:, 3, :, 0, 0]  # (B, F)
    known = mask.sum(1)
    assert 0.3 < (known > 0).float().mean() < 0.7 and known.max() <= 3
    assert torch.all(mask[:, 0] >= mask[:, 1])  # known frames are the leading ones
    assert torch.equal(cond["known_mask"][:, 0, :, 0, 0], mask)  # the loss leaves the known frames out
    torch.testing.assert_close(cond["concat"][:, :3] * (1 - mask[:, None, :, None, None]), torch.zeros_like(x0))
    again = adapter.encode(
        {"video": video, "label": torch.zeros(64, dtype=torch.long)},
        generator=[torch.Generator().manual_seed(i) for i in range(64)],
    )[1]["concat"]
    assert torch.equal(again, cond["concat"])  # per-sample generators make it reproducible
    assert adapter.sample_shape() == (3, 6, 8, 12) and adapter.sample_shape(10) == (3, 10, 8, 12)
    with pytest.raises(ValueError, match="whole number of frames"):
        adapter.sample_shape(2.5)
    with pytest.raises(ValueError, match=r"video batch must be \(B, 3, frames, 8, 12\)"):
        adapter.encode({"video": torch.rand(2, 3, 6, 8, 8)})


def test_video_adapter_editing_inputs():
    adapter = VideoAdapter(num_frames=6, resolution=(8, 8))
    image = torch.rand(3, 8, 8)
    clip = adapter.load_init(image)  # image-to-video: the image repeated over num_frames frames
    assert clip.shape == (3, 6, 8, 8) and torch.allclose(clip[:, 0], image * 2 - 1)
    mask = adapter.range_mask((1, 3, 6, 8, 8), 0, 2)
    assert mask.flatten().tolist() == [1, 1, 0, 0, 0, 0]
    cond = adapter.known_conditions(clip[None].expand(2, -1, -1, -1, -1), mask)
    assert list(cond) == ["concat"] and cond["concat"].shape == (2, 4, 6, 8, 8)
    torch.testing.assert_close(cond["concat"][:, 3, :, 0, 0], mask.flatten().expand(2, 6))
    decoded = adapter.decode(torch.full((1, 3, 6, 8, 8), 3.0))
    assert decoded[0].max() == 1.0


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    run_dir = train_tiny_run(tmp_path_factory.mktemp("video_run"), "video_config.yaml", steps=2)
    files = {p.suffix for p in (run_dir / "samples" / "step_000002").iterdir()}
    assert files == {".mp4", ".gif", ".png"}
    return run_dir


def test_generates_clips_of_the_requested_frames_and_size_and_writes_mp4(video_run, tmp_path):
    from mmdiff.modalities.video import read_clip, video_info

    pipe = mmdiff.load(video_run, device="cpu")
    clips = pipe.generate(2, length=10, label=[0, 2], steps=3, progress=False)
    assert [tuple(c.shape) for c in clips] == [(3, 10, 8, 12)] * 2 and 0 <= float(clips[0].min())
    paths = pipe.save(clips, tmp_path)
    info = video_info(paths[0])
    assert (info["width"], info["height"], info["fps"]) == (12, 8, 8.0)
    assert read_clip(paths[0], 10, 8.0).shape == (3, 10, 8, 12)  # frame count kept
    assert (tmp_path / "sample_preview.png").is_file()


def test_image_to_video_keeps_the_given_frame(video_run, monkeypatch):
    pipe = mmdiff.load(video_run, device="cpu")
    seen = {}
    denoiser = pipe.denoiser

    def spy(x, sigma, **cond):
        seen.update(cond)
        return denoiser(x, sigma, **cond)

    monkeypatch.setattr(pipe, "denoiser", spy)
    image = torch.rand(3, 8, 12)
    clips = pipe.generate(2, init=image, keep=(0, 1), length=6, steps=3, label=1, progress=False)
    torch.testing.assert_close(clips[0][:, 0], image, atol=2e-4, rtol=0)  # the first frame is the image
    assert seen["concat"][:, 3, :, 0, 0].tolist() == [[1, 0, 0, 0, 0, 0]] * 4  # the net is told (2B with CFG)


def test_video_evaluation_rows(video_run):
    from mmdiff.modalities.video import MovingShapes
    from mmdiff.modalities.video.evaluate import VideoEvaluator

    pipe = mmdiff.load(video_run, device="cpu")
    evaluator = VideoEvaluator()
    report = evaluator(pipe, MovingShapes(size=16, num_frames=6, resolution=(8, 12)), n=4, steps=3)
    assert list(report) == ["generated", "real, held out"]
    assert {"frechet_distance", "temporal_change_ratio"} <= set(report["generated"])
