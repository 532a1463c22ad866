"""Joint audio-video: clips made of frames and their soundtrack, for one model that generates both.

:class:`SoundingShapes` (:mod:`.synth`) is the built-in source (the moving shapes, knocking at every bounce off a wall)
and :func:`sounding_shapes_or_folder` (:mod:`.sources`) picks it or a folder of videos with sound from a config.
"""

from .sources import sounding_shapes_or_folder
from .synth import PITCHES, SoundingShapes

__all__ = [
    "PITCHES",
    "SoundingShapes",
    "sounding_shapes_or_folder",
]
