"""Is the sound in sync with the picture? Audio onsets against visible bounces, measured without pretrained networks.

The built-in audio-video data (:mod:`mmdiff.modalities.av.synth`) makes a short percussive sound at every wall bounce
of its moving shapes, so sync has a direct, checkable meaning: every onset in the soundtrack should fall on a bounce
in the frames, and every bounce should have an onset. Both sides are measured from the media alone:

* :func:`audio_onsets`: onset times of the waveform by spectral flux (Bello et al. 2005, "A tutorial on onset
  detection in music signals"; the log-magnitude flux with a maximum filter across frequency of Böck and Widmer 2013,
  "Maximum filter vibrato suppression for onset detection", which keeps Griffin-Lim's smeared partials from firing)
  on a log-mel spectrogram with an *absolute* floor, so that a silent or near-silent clip has no onsets at all
  instead of its noise being normalised up into onsets; the flux is the mean rise of the few bands that rise most (a
  pitched knock lights up a handful of mel bands, which a mean over all of them would dilute); peaks picked by
  :func:`librosa.onset.onset_detect`.
* :func:`video_bounces`: bright objects over the dark background are tracked by the brightness-weighted centroid of
  each connected bright blob; a bounce is a sign reversal of an axis velocity between frames (velocities inside a
  dead-band count as no sign, so that noise does not reverse); its time is refined within the two frame intervals
  from the reflection model (constant speed, mirror at the wall), see :func:`_reversal_time`.
* :func:`sync_scores`: over a set of clips, the share of onsets within ``tolerance`` seconds of a bounce of the same
  clip and the share of bounces with an onset that near (by default one frame, ``1 / fps``: issue 16's "within one
  frame of a bounce").
* :func:`sync_report`: both detectors and the scores for a list of ``{"video", "audio"}`` items; ``pair_with``
  pairs each clip's frames with another clip's sound, which measures the chance level; :func:`chance_scores` pools
  every such shift for a steadier chance level.

Media are tensors or arrays: video ``(3, F, H, W)`` in [0, 1] (values outside are clipped), audio ``(channels, S)``
or ``(S,)`` float waveforms (stereo is mixed to mono).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

# ---- audio -----------------------------------------------------------------------------------------------------------
ONSET_HOP_SECONDS = 0.005  # 5 ms between spectral frames: onset times to a few ms, far inside a 1/8 s frame
ONSET_WINDOW_SECONDS = 0.032  # 32 ms analysis window (512 samples at 16 kHz): a knock's attack in one or two frames
ONSET_MELS = 64
ONSET_TOP_BANDS = 8  # the onset strength is the mean rise of the 8 bands that rise most
ONSET_FLOOR_DB = -60.0  # absolute floor of the log-mel power (dB re. a full-scale sine): quieter counts as silence
ONSET_DELTA_DB = 3.0  # a peak of the flux (mean dB rise of the top bands) must exceed its local mean by this much
ONSET_WAIT_SECONDS = 0.03  # at least this much between two onsets
ONSET_LATENCY_SECONDS = -0.0075  # subtracted from detected times: the detector runs 7.5 ms early (centred windows)

# ---- video -----------------------------------------------------------------------------------------------------------
BACKGROUND_MAX = 0.2  # background channels lie in [0, 0.2] (MovingShapes); brightness above it weights the centroid
BLOB_THRESHOLD = 0.5  # an object pixel's largest channel exceeds this (as mmdiff.modalities.video.metrics)
MIN_BLOB_MASS = 0.5  # blobs of less total weight (in pixels of full brightness) are noise and dropped
DEAD_BAND = 1 / 80  # |axis velocity| below this (shorter-frame-sides per frame: 0.2 px at 16x16) has no sign
MAX_JUMP = 0.25  # a blob moving more than this (shorter sides) between frames starts a new track
EDGE_SLOWDOWN = 0.6  # a first (last) step slower than this share of the next (previous) ones, at a wall: a bounce
EDGE_STEPS = 3  # steps after the first that measure the speed it is compared with
MASS_CHANGE = 1.4  # a blob whose mass changes by more than this factor between frames starts a new track


def _mono(waveform: Any) -> np.ndarray:
    """A float64 mono waveform (S,) from ``(channels, S)`` or ``(S,)`` tensors or arrays (channels averaged)."""
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().cpu().float().numpy()
    y = np.asarray(waveform, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(axis=0)
    if y.ndim != 1:
        raise ValueError(f"audio: need a waveform (channels, samples) or (samples,), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("audio: the waveform contains NaN or inf")
    return y


def onset_envelope(waveform: Any, sample_rate: int) -> tuple[np.ndarray, float]:
    """``(envelope (frames,), hop in seconds)``: the spectral-flux onset strength that :func:`audio_onsets` peaks.

    Log-mel power in dB relative to a full-scale sine, floored at :data:`ONSET_FLOOR_DB` (absolute, so loudness is
    kept: quiet hiss stays below the floor and gives no flux), then :func:`librosa.onset.onset_strength` with a
    3-band maximum filter across frequency (SuperFlux) and the mean of the :data:`ONSET_TOP_BANDS` largest band
    rises (:func:`_top_bands_mean`): the dB rise per frame of the bands that rise. Frames
    whose window runs past the end of the waveform are 0 (the cut-off is not an onset).
    """
    import librosa  # lazily: librosa pulls in numba, which training does not need

    y = _mono(waveform)
    sample_rate = int(sample_rate)
    hop = max(1, round(ONSET_HOP_SECONDS * sample_rate))
    n_fft = int(2 ** np.ceil(np.log2(ONSET_WINDOW_SECONDS * sample_rate)))
    mel = librosa.feature.melspectrogram(
        y=y, sr=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=ONSET_MELS, fmin=30.0, power=2.0
    )  # (n_mels, frames)
    reference = _full_scale_power(sample_rate, n_fft)
    db = librosa.power_to_db(mel, ref=reference, amin=reference * 10 ** (ONSET_FLOOR_DB / 10), top_db=None)
    envelope = librosa.onset.onset_strength(
        S=db, sr=sample_rate, hop_length=hop, lag=1, max_size=3, center=False, aggregate=_top_bands_mean
    )  # (frames,): the mel frames are centred already
    # A window that runs past the end sees the waveform cut off (zero padding): a broadband click that is no onset.
    envelope[np.arange(len(envelope)) * hop + n_fft // 2 > len(y)] = 0.0
    return envelope, hop / sample_rate


def _top_bands_mean(flux: np.ndarray, axis: int = -2) -> np.ndarray:
    """The mean of the :data:`ONSET_TOP_BANDS` largest per-band rises: a pitched knock raises a few mel bands only,
    which a mean over all bands would dilute, while a single band's rise would follow noise."""
    k = min(ONSET_TOP_BANDS, flux.shape[axis])
    return -np.sort(-flux, axis=axis).take(range(k), axis=axis).mean(axis=axis)


_FULL_SCALE: dict[tuple[int, int], float] = {}


def _full_scale_power(sample_rate: int, n_fft: int) -> float:
    """The largest mel-band power of a full-scale 1 kHz sine with these settings: 0 dB of the onset spectrogram."""
    import librosa  # lazily: librosa pulls in numba, which training does not need

    key = (sample_rate, n_fft)
    if key not in _FULL_SCALE:
        t = np.arange(4 * n_fft) / sample_rate
        mel = librosa.feature.melspectrogram(
            y=np.sin(2 * np.pi * 1000.0 * t), sr=sample_rate, n_fft=n_fft, hop_length=n_fft, n_mels=ONSET_MELS, fmin=30
        )
        _FULL_SCALE[key] = float(mel.max())
    return _FULL_SCALE[key]


def audio_onsets(waveform: Any, sample_rate: int) -> np.ndarray:
    """Onset times in seconds (sorted, float64) of a waveform ``(channels, S)`` or ``(S,)``; stereo is mixed to mono.

    Peaks of :func:`onset_envelope` (librosa's peak picker: a local maximum over +-30 ms that exceeds the mean of the
    100 ms before and 100 ms after by :data:`ONSET_DELTA_DB`, at least :data:`ONSET_WAIT_SECONDS` apart), minus the
    detector's measured latency :data:`ONSET_LATENCY_SECONDS`, clipped at 0. Silence (below
    :data:`ONSET_FLOOR_DB`) has none.
    """
    import librosa  # lazily: librosa pulls in numba, which training does not need

    envelope, hop_s = onset_envelope(waveform, sample_rate)
    frames = librosa.onset.onset_detect(
        onset_envelope=envelope,
        sr=sample_rate,
        hop_length=1,  # frame indices; converted with hop_s below
        units="frames",
        normalize=False,
        delta=ONSET_DELTA_DB,
        wait=max(1, round(ONSET_WAIT_SECONDS / hop_s)),
        pre_max=max(1, round(0.03 / hop_s)),
        post_max=max(1, round(0.03 / hop_s)) + 1,
        pre_avg=max(1, round(0.1 / hop_s)),
        post_avg=max(1, round(0.1 / hop_s)) + 1,
    )
    return np.maximum(np.asarray(frames, dtype=np.float64) * hop_s - ONSET_LATENCY_SECONDS, 0.0)


# ---- video -----------------------------------------------------------------------------------------------------------
def _as_video(video: Any) -> np.ndarray:
    """A float32 array (3, F, H, W) clipped to [0, 1] from a tensor or array."""
    if hasattr(video, "detach"):
        video = video.detach().cpu().float().numpy()
    clip = np.asarray(video, dtype=np.float32)
    if clip.ndim != 4 or clip.shape[1] < 1:
        raise ValueError(f"video: need a clip (C, F, H, W), got shape {clip.shape}")
    if not np.isfinite(clip).all():
        raise ValueError("video: the clip contains NaN or inf")
    return np.clip(clip, 0.0, 1.0)


def _blobs(value: np.ndarray) -> list[np.ndarray]:
    """Per frame of ``value`` (F, H, W), the bright blobs as rows ``(y, x, mass, top, bottom, left, right)`` (k, 7):
    centroids in pixels, and whether the blob reaches each border (1.0 or 0.0).

    A blob is an 8-connected region where the largest channel exceeds :data:`BLOB_THRESHOLD`, grown by one pixel to
    take in its anti-aliased edge; its centroid weights each pixel by its brightness above the background level
    (``value - BACKGROUND_MAX``), which places it to a small fraction of a pixel. Blobs lighter than
    :data:`MIN_BLOB_MASS` are dropped.
    """
    weight = np.clip(value - BACKGROUND_MAX, 0.0, None) / (1.0 - BACKGROUND_MAX)  # (F, H, W)
    out = []
    for f in range(value.shape[0]):
        labels, count = ndimage.label(value[f] > BLOB_THRESHOLD, structure=np.ones((3, 3), dtype=bool))
        if count:
            # Grow each blob by one pixel (a pixel touched by two blobs goes to the lower label: rare, harmless).
            grown = ndimage.grey_dilation(labels, size=(3, 3))
            labels = np.where(labels > 0, labels, grown)
        index = np.arange(1, count + 1)
        mass = ndimage.sum_labels(weight[f], labels, index)  # (count,)
        centre = np.asarray(ndimage.center_of_mass(weight[f], labels, index), dtype=np.float64).reshape(-1, 2)
        boxes = ndimage.find_objects(labels, max_label=count)
        touch = np.array(
            [
                [b[0].start == 0, b[0].stop == value.shape[1], b[1].start == 0, b[1].stop == value.shape[2]]
                for b in boxes
            ],
            dtype=np.float64,
        ).reshape(-1, 4)  # (count, 4): the grown blob reaches the top, bottom, left, right border
        rows = np.column_stack([centre + 0.5, mass, touch])  # pixel (i, j) covers [i, i + 1): centres at +0.5
        out.append(rows[mass >= MIN_BLOB_MASS])
    return out


def _tracks(blobs: list[np.ndarray], max_jump: float) -> list[tuple[int, np.ndarray]]:
    """Link blobs frame to frame into tracks ``(first frame, rows (length, 7))`` (the blobs' rows) by minimum total
    distance (Hungarian assignment). A blob with no partner within ``max_jump`` pixels, or whose mass differs from its
    partner's by more than :data:`MASS_CHANGE` (two objects merging or parting: the centroid jumps between them),
    starts a new track."""
    finished: list[tuple[int, list]] = []
    active: list[tuple[int, list]] = []  # (first frame, [blob row, ...]) of tracks that reached the last frame
    for f, rows in enumerate(blobs):
        matched: dict[int, int] = {}  # blob -> active track
        if active and len(rows):
            last = np.array([track[1][-1] for track in active])  # (a, 3)
            cost = np.linalg.norm(last[:, None, :2] - rows[None, :, :2], axis=-1)  # (a, k)
            ratio = rows[None, :, 2] / last[:, None, 2]  # (a, k)
            for a, k in zip(*linear_sum_assignment(cost)):
                if cost[a, k] <= max_jump and 1 / MASS_CHANGE <= ratio[a, k] <= MASS_CHANGE:
                    matched[k] = a
        still = []
        for k, row in enumerate(rows):
            if k in matched:
                track = active[matched[k]]
                track[1].append(row)
            else:
                track = (f, [row])
            still.append(track)
        finished += [track for a, track in enumerate(active) if a not in matched.values()]
        active = still
    return [(first, np.array(rows)) for first, rows in finished + active]


def _reversal_time(v_in: float, v_out: float, k_in: int, k_out: int) -> float:
    """The bounce time in frames between velocity ``v_in`` (frames ``k_in -> k_in + 1``) and the reversed ``v_out``
    (frames ``k_out -> k_out + 1``, ``k_out > k_in``; dead-band velocities between them).

    Reflection model: constant speed ``s = max(|v_in|, |v_out|)`` mirrored at a wall. When the reversal is between
    adjacent intervals, the slower one holds the bounce: a bounce at ``t`` in ``[k, k + 1]`` leaves that interval a
    signed displacement ``s (2 (t - k) - 1)`` along the incoming direction, so ``t = k + 1/2 + d / (2 s)``. With
    dead-band intervals in between, the middle of them.
    """
    if k_out > k_in + 1:
        return (k_in + 1 + k_out) / 2
    speed = max(abs(v_in), abs(v_out))
    direction = np.sign(v_in)  # the incoming direction
    if abs(v_in) < abs(v_out):  # the bounce is inside the incoming interval [k_in, k_in + 1]
        return k_in + 0.5 + direction * v_in / (2 * speed)
    return k_out + 0.5 + direction * v_out / (2 * speed)  # inside the outgoing interval [k_out, k_out + 1]


def _edge_bounce(v: np.ndarray, touch: np.ndarray, dead_band: float) -> list[float]:
    """A bounce in the first half frame of a clip, which no velocity reversal shows: ``[time in frames]`` or ``[]``.

    ``v``: the velocities along one axis; ``touch``: whether the blob reaches the (low, high) border of that axis in
    frame 0. By the reflection model a bounce at ``t`` in ``[0, 1/2)`` leaves the first interval a
    shorter displacement ``s (1 - 2 t)`` in the outgoing direction, so the object starts slower than it goes on,
    against the wall it moves away from: then ``t = (1 - |v0| / s) / 2``, ``s`` the median speed of the next
    :data:`EDGE_STEPS` steps (all in the same direction). Against noise, only a clear slowdown counts
    (:data:`EDGE_SLOWDOWN`), so bounces in about the first quarter frame are found. (The end of a clip is
    the same case with time reversed.)
    """
    after = v[1 : 1 + EDGE_STEPS]  # the steps that set the speed s
    if np.any(np.abs(after) <= dead_band) or np.any(np.sign(after) != np.sign(v[0])):
        return []
    speed = float(np.median(np.abs(after)))
    if abs(v[0]) > EDGE_SLOWDOWN * speed:
        return []
    if not touch[0 if v[0] > 0 else 1]:  # moving away from the low wall needs the blob at the low border
        return []
    return [0.5 * (1 - abs(v[0]) / speed)]


def object_tracks(video: Any) -> tuple[list[np.ndarray], list[tuple[int, np.ndarray]], int]:
    """The bright objects of a clip ``(3, F, H, W)`` as the sync measure sees them: ``(blobs, tracks, side)``.

    ``blobs``: per frame, rows ``(y, x, mass, top, bottom, left, right)`` (:func:`_blobs`, on the HSV value, so
    brightness whatever the hue); ``tracks``: ``(first frame, rows (length, 7))`` linked by :func:`_tracks` within
    :data:`MAX_JUMP` shorter sides; ``side``: the shorter frame side in pixels, the unit of the thresholds.
    """
    clip = _as_video(video)
    side = min(clip.shape[2:])
    blobs = _blobs(clip.max(axis=0))  # HSV value (F, H, W)
    return blobs, _tracks(blobs, MAX_JUMP * side), side


def axis_velocities(tracks: list[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray, int, np.ndarray]]:
    """``(first frame, rows, axis, v)`` for each track of :func:`object_tracks` and each axis (0: y, 1: x), ``v``
    ``(length - 1,)`` the track's velocity along the axis in pixels per frame: what bounces are read from."""
    for first, rows in tracks:
        velocity = np.diff(rows[:, :2], axis=0)  # (length - 1, 2)
        for axis in range(2):
            yield first, rows, axis, velocity[:, axis]


def object_speeds(video: Any) -> np.ndarray:
    """``(K,)`` the frame-to-frame moves of the tracked objects of a clip ``(3, F, H, W)`` (:func:`object_tracks`), in
    pixels per frame: a bounce needs speed above :data:`DEAD_BAND` on its axis, so objects that crawl show few."""
    moves = [np.linalg.norm(np.diff(rows[:, :2], axis=0), axis=1) for _, rows in object_tracks(video)[1]]
    return np.concatenate(moves) if moves else np.zeros(0)


def velocity_reversals(v: np.ndarray, dead_band: float) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of velocities ``v`` (along one axis, frame to frame) that reverse: ``v[i]``
    and ``v[j]`` are the consecutive velocities outside ``dead_band`` and their signs differ (velocities inside it,
    between them, have no sign)."""
    signs = np.where(np.abs(v) > dead_band, np.sign(v), 0.0)
    return [(int(i), int(j)) for i, j in pairwise(np.flatnonzero(signs)) if signs[i] != signs[j]]


def video_bounces(video: Any, fps: float) -> np.ndarray:
    """Bounce times in seconds (sorted, float64) of the bright objects in a clip ``(3, F, H, W)``, from frames alone.

    Each bright blob (:func:`_blobs`) is tracked across frames (:func:`_tracks`); along each axis of each track a
    bounce is a sign reversal of the velocity between frames, velocities within :data:`DEAD_BAND` (shorter sides per
    frame) having no sign; its time is placed within the frames by :func:`_reversal_time` and divided by ``fps``.
    A bounce off a corner reverses both axes and counts twice, as two walls are hit (and two knocks sound).
    """
    if fps <= 0:
        raise ValueError(f"fps: need a positive frame rate, got {fps}")
    blobs, tracks, side = object_tracks(video)
    frames, band = len(blobs), DEAD_BAND * side  # band: the dead band in pixels per frame
    times = []
    for first, rows, axis, v in axis_velocities(tracks):
        for i, j in velocity_reversals(v, band):
            times.append((first + _reversal_time(v[i], v[j], i, j)) / fps)
        if len(v) >= 2 and first == 0:
            times += [t / fps for t in _edge_bounce(v, rows[0, 3 + 2 * axis : 5 + 2 * axis], band)]
        if len(v) >= 2 and first + len(rows) == frames:
            end = _edge_bounce(-v[::-1], rows[-1, 3 + 2 * axis : 5 + 2 * axis], band)
            times += [(frames - 1 - t) / fps for t in end]
    return np.sort(np.asarray(times, dtype=np.float64))


# ---- scores ----------------------------------------------------------------------------------------------------------
def _near(times: np.ndarray, targets: np.ndarray, tolerance: float) -> np.ndarray:
    """For each of ``times``, whether some of ``targets`` lies within ``tolerance`` (inclusive): bool (len(times),)."""
    if not len(times) or not len(targets):
        return np.zeros(len(times), dtype=bool)
    targets = np.sort(targets)
    right = np.clip(np.searchsorted(targets, times), 0, len(targets) - 1)
    left = np.clip(right - 1, 0, len(targets) - 1)
    distance = np.minimum(np.abs(targets[right] - times), np.abs(targets[left] - times))
    return distance <= tolerance + 1e-9


def sync_scores(onsets: Sequence[np.ndarray], bounces: Sequence[np.ndarray], tolerance: float) -> dict[str, float]:
    """How well onsets and bounces line up over a set of clips (``onsets[i]`` and ``bounces[i]``: clip ``i``'s times
    in seconds).

    * ``onsets_near_bounce``: the share of all onsets that lie within ``tolerance`` seconds of a bounce of the same
      clip (a precision: sounds that have a visible cause);
    * ``bounces_with_onset``: the share of all bounces with an onset of the same clip that near (a recall);
    * ``onsets``, ``bounces``: the counts over all clips; ``onsets_per_clip``, ``bounces_per_clip``; ``clips``.

    Shares are pooled over clips (every onset counts once). With no onsets at all, ``onsets_near_bounce`` is 0, and
    with no bounces ``bounces_with_onset`` is 0 (nothing was shown to be in sync); the counts say which case it is.
    No value is ever NaN.
    """
    if len(onsets) != len(bounces):
        raise ValueError(f"sync_scores: {len(onsets)} onset lists but {len(bounces)} bounce lists; need one per clip")
    if tolerance < 0:
        raise ValueError(f"sync_scores: tolerance must be >= 0 seconds, got {tolerance}")
    onsets = [np.asarray(o, dtype=np.float64).ravel() for o in onsets]
    bounces = [np.asarray(b, dtype=np.float64).ravel() for b in bounces]
    near = sum(int(_near(o, b, tolerance).sum()) for o, b in zip(onsets, bounces))
    heard = sum(int(_near(b, o, tolerance).sum()) for o, b in zip(onsets, bounces))
    n_onsets, n_bounces, clips = sum(map(len, onsets)), sum(map(len, bounces)), len(onsets)
    return {
        "onsets_near_bounce": near / n_onsets if n_onsets else 0.0,
        "bounces_with_onset": heard / n_bounces if n_bounces else 0.0,
        "onsets": float(n_onsets),
        "bounces": float(n_bounces),
        "onsets_per_clip": n_onsets / clips if clips else 0.0,
        "bounces_per_clip": n_bounces / clips if clips else 0.0,
        "clips": float(clips),
    }


def sync_report(
    items: Sequence[dict[str, Any]],
    fps: float,
    sample_rate: int,
    tolerance: float | None = None,
    pair_with: Sequence[int] | None = None,
) -> dict[str, float]:
    """:func:`sync_scores` of clips ``items`` (dicts with ``"video"`` (3, F, H, W) in [0, 1] and ``"audio"``
    (channels, S)): onsets of each clip's audio against bounces in its frames (onsets after the start of the last
    frame, where no bounce can be seen, are left out: :func:`detect`).

    ``tolerance``: seconds; default one frame, ``1 / fps``. ``pair_with``: clip ``i``'s frames are scored against the
    audio of clip ``pair_with[i]`` (a permutation, e.g. each clip with the next one's sound: the chance level, what
    onsets unrelated to the picture score).
    """
    tolerance = _tolerance(fps, tolerance)
    onsets, bounces = detect(items, fps, sample_rate)
    if pair_with is not None:
        pair_with = [int(j) for j in pair_with]
        if sorted(pair_with) != list(range(len(items))):
            raise ValueError(f"sync_report: pair_with must be a permutation of 0..{len(items) - 1}, got {pair_with}")
        onsets = [onsets[j] for j in pair_with]
    return sync_scores(onsets, bounces, tolerance)


def chance_scores(onsets: Sequence[np.ndarray], bounces: Sequence[np.ndarray], tolerance: float) -> dict[str, float]:
    """:func:`sync_scores` with each clip's bounces against the onsets of *other* clips: pooled over every shift
    ``k = 1 .. n - 1`` (clip ``i`` with the sound of clip ``(i + k) mod n``), the next-clip pairing and all the others.

    The expectation is that of one mismatched pairing; pooling ``n - 1`` of them makes it far steadier, so that a
    ratio to it means something at a few dozen clips (one pairing of 32 clips has only a handful of chance hits).
    The counts are those of one pairing (the clips' own onsets and bounces). One clip has no other: shares 0.
    """
    n = len(onsets)
    if len(bounces) != n:
        raise ValueError(f"chance_scores: {n} onset lists but {len(bounces)} bounce lists; need one per clip")
    shifted = [onsets[(i + k) % n] for k in range(1, n) for i in range(n)]
    scores = sync_scores(shifted, [bounces[i] for _ in range(1, n) for i in range(n)], tolerance)
    counts = sync_scores(onsets, bounces, tolerance)
    return {
        **scores,
        **{key: counts[key] for key in ("onsets", "bounces", "onsets_per_clip", "bounces_per_clip", "clips")},
    }


def scores_with_own_chance(
    onsets: Sequence[np.ndarray],
    bounces: Sequence[np.ndarray],
    tolerance: float,
    chance: dict[str, float] | None = None,
) -> dict[str, float]:
    """:func:`sync_scores` plus ``own_chance``, the precision of these clips with each clip's bounces against the other
    clips' onsets (:func:`chance_scores`, or ``chance`` when it is already computed for them), and
    ``sync_vs_own_chance``, their own precision over it (1: the sound is no more in sync with its own picture than
    with another clip's; NaN when ``own_chance`` is 0). Clips that show more bounces than the data (flickering
    generated pictures) have a higher chance level than the real clips', which this ratio accounts for."""
    scores = sync_scores(onsets, bounces, tolerance)
    own = (chance_scores(onsets, bounces, tolerance) if chance is None else chance)["onsets_near_bounce"]
    ratio = scores["onsets_near_bounce"] / own if own > 0 else float("nan")
    return {**scores, "own_chance": own, "sync_vs_own_chance": ratio}


def detect(items: Sequence[dict[str, Any]], fps: float, sample_rate: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(onsets, bounces)``: :func:`audio_onsets` of each item's ``"audio"`` and :func:`video_bounces` of its
    ``"video"``, seconds, one array per item.

    Onsets after the start of the last frame (``(F - 1) / fps``) are left out: a bounce after it shows no velocity
    reversal in the frames, so such an onset could never be matched (on the built-in data about 7% of the knocks;
    keeping them would cap the real clips' score well below 1 for a reason that is not sync).
    """
    for i, item in enumerate(items):
        if "video" not in item or "audio" not in item:
            raise ValueError(f"sync_report: item {i} needs 'video' and 'audio', has {sorted(item)}")
    bounces = [video_bounces(item["video"], fps) for item in items]
    onsets = []
    for item in items:
        found = audio_onsets(item["audio"], sample_rate)
        last_frame = (item["video"].shape[1] - 1) / fps  # seconds; no velocity reversal can be seen after it
        onsets.append(found[found <= last_frame + 1e-9])
    return onsets, bounces


def _tolerance(fps: float, tolerance: float | None) -> float:
    """The tolerance in seconds: ``tolerance``, or one frame ``1 / fps`` when ``None``."""
    if fps <= 0:
        raise ValueError(f"sync_report: fps must be positive, got {fps}")
    return 1.0 / fps if tolerance is None else float(tolerance)
