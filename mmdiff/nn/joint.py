"""A joint audio-video network: a video U-Net and an audio U-Net run side by side, coupled by cross-modal attention.

One network call denoises a whole clip: the core hands it the clip packed flat (:class:`~mmdiff.core.Packing`:
video ``(3, F, H, W)`` then log-mel ``(M, r F)``, ``r`` mel frames per video frame), it unpacks the two, runs the 3-D
video U-Net and the 1-D audio U-Net (the existing :class:`~mmdiff.nn.unet.UNet`, unchanged) stage by stage, and after
the stages of the ``coupling_levels`` lets each stream attend to the other stream's positions that are close in time
(:class:`~mmdiff.nn.blocks.CrossModalAttention`, in both directions). This is the coupled-U-Net design of
MM-Diffusion (Ruan et al. 2023, "MM-Diffusion: Learning Multi-Modal Diffusion Models for Joint Audio and Video
Generation"), with windowed attention at chosen resolutions. The couplings start at zero, so a fresh joint network is
the two single-modality networks; known-part inputs (video given for video-to-audio, audio given for audio-to-video,
leading frames for continuation) come packed the same way as ``concat``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..core.packing import Packing
from .blocks import CrossModalAttention
from .unet import UNet

#: The stage kinds after which the two streams exchange features (not the resampling stages).
COUPLED_KINDS = ("down", "mid", "up")


def clip_packing(
    frames: int, video_channels: int, resolution: Sequence[int], audio_channels: int, audio_frames_per_frame: int
) -> Packing:
    """The layout of one clip of ``frames`` video frames: ``video (video_channels, frames, H, W)`` then ``audio
    (audio_channels, audio_frames_per_frame * frames)``. The adapter packs and the network unpacks with it."""
    return Packing(
        {
            "video": (video_channels, frames, *resolution),
            "audio": (audio_channels, audio_frames_per_frame * frames),
        }
    )


class JointUNet(nn.Module):
    """``net(x (B, N), t (B,), label=, concat=(B, N_c), context=, context_mask=, pooled=) -> (B, N)``.

    Args:
        video: the video U-Net (``dims=3``); its ``in_channels`` are the video channels.
        audio: the audio U-Net (``dims=1``); its ``in_channels`` are the mel bins (times audio channels). Both must have
            the same stage structure (as many levels and residual blocks per level), so they can run in step.
        resolution: ``(H, W)`` of the frames.
        audio_frames_per_frame: mel frames per video frame (``sample_rate / (fps * hop_length)``, a whole number).
        coupling_levels: levels (0 = full resolution) where the streams attend to each other, after every
            residual stage of the level on the way down, in the middle (when it is the last level) and on the way up.
        window: how far in time (video frames, beyond the overlap of two positions) a position may look.
        time_bias: a learned relative-time bias in the couplings (``CrossModalAttention``), so a position tells its
            own frame from its neighbours.
        qk_norm: unit queries and keys with a learned scale in the couplings, so they can attend to a small object
            from the start.
        heads: attention heads of the couplings.
    """

    def __init__(
        self,
        video: UNet,
        audio: UNet,
        resolution: Sequence[int] = (16, 16),
        audio_frames_per_frame: int = 8,
        coupling_levels: Sequence[int] = (2,),
        window: float = 1.0,
        heads: int = 4,
        time_bias: bool = False,
        qk_norm: bool = False,
    ):
        super().__init__()
        if video.dims != 3 or audio.dims != 1:
            raise ValueError(f"JointUNet: video must be a 3-D UNet and audio a 1-D one, got {video.dims}, {audio.dims}")
        if [k for k, _ in video.stage_levels] != [k for k, _ in audio.stage_levels]:
            raise ValueError(
                "JointUNet: the video and audio U-Nets must have the same stages (channel_mult length and "
                "num_res_blocks) to run in step"
            )
        levels = range(len(video.widths))
        unknown = sorted(set(coupling_levels) - set(levels))
        if unknown:
            raise ValueError(f"JointUNet: coupling_levels {unknown} do not exist; levels are {list(levels)}")
        self.video, self.audio = video, audio
        self.resolution, self.audio_frames_per_frame = tuple(int(n) for n in resolution), int(audio_frames_per_frame)
        self.context_dim = video.context_dim
        self.coupled = [
            stage
            for stage, (kind, level) in enumerate(video.stage_levels)
            if kind in COUPLED_KINDS and level in coupling_levels
        ]
        self.video_from_audio = nn.ModuleDict()
        self.audio_from_video = nn.ModuleDict()
        for stage in self.coupled:
            level = video.stage_levels[stage][1]
            cv, ca = video.widths[level], audio.widths[level]
            self.video_from_audio[str(stage)] = CrossModalAttention(cv, ca, heads, window, time_bias, qk_norm)
            self.audio_from_video[str(stage)] = CrossModalAttention(ca, cv, heads, window, time_bias, qk_norm)

    def packing(self, frames: int, concat: bool = False) -> Packing:
        """The layout of a clip of ``frames`` frames (of its known-part input when ``concat``)."""
        if concat:
            return clip_packing(
                frames,
                self.video.concat_channels,
                self.resolution,
                self.audio.concat_channels,
                self.audio_frames_per_frame,
            )
        return clip_packing(
            frames, self.video.in_channels, self.resolution, self.audio.in_channels, self.audio_frames_per_frame
        )

    def frames_of(self, size: int) -> int:
        """Video frames of a packed clip of ``size`` numbers, or a one-line error when none fits."""
        h, w = self.resolution
        per_frame = self.video.in_channels * h * w + self.audio.in_channels * self.audio_frames_per_frame
        if size % per_frame:
            raise ValueError(
                f"JointUNet: a packed clip of {size} numbers is no whole number of frames of {per_frame} "
                f"(video {self.video.in_channels}x{h}x{w} + audio {self.audio.in_channels}x{self.audio_frames_per_frame})"
            )
        return size // per_frame

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        label: Tensor | None = None,
        concat: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        pooled: Tensor | None = None,
    ) -> Tensor:
        frames = self.frames_of(x.shape[1])
        layout = self.packing(frames)
        parts = layout.unpack(x)  # video (B, Cv, F, H, W), audio (B, Ca, rF)
        known = (
            self.packing(frames, concat=True).unpack(concat)
            if concat is not None and (self.video.concat_channels or self.audio.concat_channels)
            else {"video": None, "audio": None}
        )
        cond = {"label": label, "context": context, "context_mask": context_mask, "pooled": pooled}
        video = self.video.begin(parts["video"], t, concat=known["video"], **cond)
        audio = self.audio.begin(parts["audio"], t, concat=known["audio"], **cond)
        for stage in range(len(self.video.stage_levels)):
            self.video.step(video, stage)
            self.audio.step(audio, stage)
            if stage in self.coupled:
                v, a = video.h, audio.h
                video.h = self.video_from_audio[str(stage)](v, a, span=frames)
                audio.h = self.audio_from_video[str(stage)](a, v, span=frames)
                if stage < len(self.video.down):  # the skip connection carries the coupled features
                    video.skips[-1], audio.skips[-1] = video.h, audio.h
        return layout.pack({"video": self.video.finish(video), "audio": self.audio.finish(audio)})
