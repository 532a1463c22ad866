"""Audio: waveforms from files in any format FFmpeg reads, as log-mel spectrograms for a 1D U-Net.

This package holds the audio adapter's pieces; its I/O layer (:mod:`.io`) decodes, resamples and writes files with
PyAV, and :class:`AudioFolder` (:mod:`.folder`) turns a folder of files into fixed-length training crops.
:class:`MusicSynth` (:mod:`.synth`) is the built-in synthetic music source, and :mod:`.metrics` asks whether generated
audio is music (pitch on the scale, Fréchet distance of handcrafted features).
"""

from .adapter import LogMelAdapter
from .folder import AUDIO_EXTENSIONS, AudioFolder
from .io import AudioDecodeError, audio_info, load_audio, write_audio
from .metrics import audio_features, frechet_distance, music_report, pitch_on_scale_share
from .roundtrip import roundtrip_quality
from .sources import music_or_folder
from .synth import SCALES, MusicSynth, scale_frequencies
from .vocoder import GriffinLim, Vocoder
from .waveform import WaveformAdapter

__all__ = [
    "AUDIO_EXTENSIONS",
    "SCALES",
    "AudioDecodeError",
    "AudioFolder",
    "GriffinLim",
    "LogMelAdapter",
    "MusicSynth",
    "Vocoder",
    "WaveformAdapter",
    "audio_features",
    "audio_info",
    "frechet_distance",
    "load_audio",
    "music_or_folder",
    "music_report",
    "pitch_on_scale_share",
    "roundtrip_quality",
    "scale_frequencies",
    "write_audio",
]
