"""Video: clips as (C, F, H, W) tensors for a 3D U-Net.

:class:`MovingShapes` (:mod:`.synth`) is the built-in synthetic video source (bouncing shapes, no download), and
:mod:`.metrics` asks whether generated clips move like the data (temporal change, Fréchet distance of handcrafted
features, objects that stay whole). Its I/O layer (:mod:`.io`) reads clips by timestamp and writes mp4/gif/frame grids with PyAV, and
:class:`VideoFolder` (:mod:`.folder`) turns a folder of videos into fixed-length training clips.
"""

from .adapter import VideoAdapter
from .folder import VIDEO_EXTENSIONS, VideoFolder
from .io import VideoDecodeError, read_clip, resize_center_crop, video_info, write_frame_grid, write_gif, write_mp4
from .metrics import (
    FEATURE_NAMES,
    OBJECT_STABILITY_KEYS,
    frechet_distance,
    object_stability,
    temporal_change,
    temporal_consistency_report,
    video_features,
    video_report,
)
from .sources import shapes_or_folder
from .synth import SHAPES, MovingShapes

__all__ = [
    "FEATURE_NAMES",
    "OBJECT_STABILITY_KEYS",
    "SHAPES",
    "VIDEO_EXTENSIONS",
    "MovingShapes",
    "VideoAdapter",
    "VideoDecodeError",
    "VideoFolder",
    "frechet_distance",
    "object_stability",
    "read_clip",
    "resize_center_crop",
    "shapes_or_folder",
    "temporal_change",
    "temporal_consistency_report",
    "video_features",
    "video_info",
    "video_report",
    "write_frame_grid",
    "write_gif",
    "write_mp4",
]
