"""MovingShapes (the built-in synthetic video source) and the video metrics (temporal change, Fréchet distance,
objects that stay whole)."""

import time

import numpy as np
import pytest
import torch

from mmdiff.modalities.video.metrics import (
    FEATURE_NAMES,
    OBJECT_STABILITY_KEYS,
    frechet_distance,
    object_stability,
    temporal_change,
    temporal_consistency_report,
    video_features,
    video_report,
)
from mmdiff.modalities.video.synth import SHAPES, MovingShapes, coverage, direction_word, half_extent


def synth_batch(n, seed):
    data = MovingShapes(size=n, seed=seed)
    return np.stack([data.render(i) for i in range(n)])  # (N, 3, F, H, W)


@pytest.fixture(scope="module")
def synth():
    return MovingShapes(size=96, seed=0)


@pytest.fixture(scope="module")
def clips_a():
    return synth_batch(96, seed=0)


@pytest.fixture(scope="module")
def clips_b():
    return synth_batch(96, seed=1)


def test_items_have_shape_dtype_range_label(synth):
    item = synth[0]
    video = item["video"]
    assert video.shape == (3, 16, 32, 32) and video.dtype == torch.float32
    assert 0.0 <= video.min() and video.max() <= 1.0 and torch.isfinite(video).all()
    assert video.max() > 0.7 and video.min() < 0.2  # bright objects on a dark background
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert len(synth) == 96 and synth.num_classes == 3 and synth.class_names == SHAPES
    assert "96 clips" in synth.summary() and "circle/square/triangle" in synth.summary()


def test_non_square_resolution():
    data = MovingShapes(size=6, num_frames=8, resolution=(24, 48), shapes=("square", "triangle"))
    video = data[1]["video"]
    assert video.shape == (3, 8, 24, 48) and int(data[1]["label"]) == 1
    for i in range(6):
        for obj in data.trajectories(i):
            hy, hx = obj["half_extent"]
            pos = obj["positions"]
            assert (pos[:, 0] >= hy - 1e-9).all() and (pos[:, 0] <= 24 - hy + 1e-9).all()
            assert (pos[:, 1] >= hx - 1e-9).all() and (pos[:, 1] <= 48 - hx + 1e-9).all()


def test_deterministic_by_seed_and_index(synth):
    a = synth[5]["video"]
    assert torch.equal(a, MovingShapes(size=96, seed=0)[5]["video"])
    assert torch.equal(a, synth[(5, 123456789)]["video"])  # the item seed does not change the clip
    assert not torch.equal(a, synth[6]["video"])
    assert not torch.equal(a, synth[8]["video"])  # same shape kind, another clip
    assert not torch.equal(a, MovingShapes(size=96, seed=1)[5]["video"])
    ta, tb = synth.trajectories(5), MovingShapes(size=96, seed=0).trajectories(5)
    assert len(ta) == len(tb) and all(np.array_equal(x["positions"], y["positions"]) for x, y in zip(ta, tb))


def test_labels_cover_shapes_and_objects_share_the_kind(synth):
    labels = [int(synth[i]["label"]) for i in range(12)]
    assert set(labels) == set(range(3))
    counts = set()
    for i, label in enumerate(labels):
        objects = synth.trajectories(i)
        counts.add(len(objects))
        assert {obj["shape"] for obj in objects} == {SHAPES[label]}
        assert all(max(obj["colour"]) >= 0.8 for obj in objects)  # bright
    assert counts == {1, 2}


def test_objects_stay_inside_and_bounce(synth):
    h, w = synth.resolution
    bounces = 0
    for i in range(len(synth)):
        for obj in synth.trajectories(i):
            pos, hy_hx = obj["positions"], np.array(obj["half_extent"])  # (F, 2), (2,)
            low, high = hy_hx, np.array([h, w]) - hy_hx
            assert (pos >= low - 1e-9).all() and (pos <= high + 1e-9).all()
            step = np.diff(pos, axis=0)  # (F - 1, 2)
            speed = np.abs(np.array(obj["velocity"]))  # (2,) per axis
            assert (np.abs(step) <= speed + 1e-9).all()  # a bounce only shortens a step
            for axis in range(2):
                flips = np.nonzero(np.sign(step[1:, axis]) * np.sign(step[:-1, axis]) < 0)[0] + 1
                for t in flips:  # the object turned around near frame t: it must be next to a wall
                    gap = min(pos[t, axis] - low[axis], high[axis] - pos[t, axis])
                    assert gap <= speed[axis] + 1e-9
                bounces += len(flips)
                gaps = np.minimum(pos[:, axis] - low[axis], high[axis] - pos[:, axis])  # (F,)
                free = (gaps[:-1] > speed[axis]) & (gaps[1:] > speed[axis])  # (F - 1,) steps far from walls
                np.testing.assert_allclose(np.abs(step[free, axis]), speed[axis], atol=1e-9)  # constant velocity
    assert bounces > 10


def test_without_bouncing_paths_are_straight_inside_the_frame_and_captions_hold():
    kwargs = dict(size=64, num_frames=8, resolution=(16, 16), radius_range=(0.15, 0.25), seed=0)
    straight, bouncing = MovingShapes(bounce=False, **kwargs), MovingShapes(**kwargs)
    h, w = straight.resolution
    steps = np.arange(straight.num_frames)[:, None]  # (F, 1)
    slowed = 0
    for i in range(len(straight)):
        moved, free = straight.trajectories(i), bouncing.trajectories(i)
        assert [o["shape"] for o in moved] == [o["shape"] for o in free]  # same scene, other paths
        for obj, twin in zip(moved, free):
            pos, velocity = obj["positions"], np.array(obj["velocity"])  # (F, 2), (2,)
            low, high = np.array(obj["half_extent"]), np.array([h, w]) - np.array(obj["half_extent"])
            assert (pos >= low - 1e-9).all() and (pos <= high + 1e-9).all()
            np.testing.assert_allclose(pos, pos[0] + velocity * steps, atol=1e-9)  # never turns
            assert np.hypot(*velocity) <= np.hypot(*twin["velocity"]) + 1e-9
            slowed += np.hypot(*velocity) < np.hypot(*twin["velocity"]) - 1e-9
        # the direction word is of the velocity, so it is the direction of the whole path
        attrs = straight.attributes(i)
        assert attrs["directions"] == [direction_word(o["positions"][-1] - o["positions"][0]) for o in moved]
    assert slowed < len(straight) // 4  # the speed cap is for paths longer than the frame only
    assert "no bouncing" in straight.summary() and "no bouncing" not in bouncing.summary()
    assert straight.item_key(3) != bouncing.item_key(3)
    assert not np.array_equal(straight.render(3), bouncing.render(3))


def test_shapes_have_equal_area_and_stay_whole():
    for shape in SHAPES:
        centres = np.array([[20.3, 21.7], [30.0, 30.0]])
        area = coverage(shape, centres, 8.0, 64, 64).sum(axis=(1, 2))  # anti-aliased area per frame
        np.testing.assert_allclose(area, np.pi * 64, rtol=0.01)
    data = MovingShapes(size=12, num_objects=(1, 1), seed=3)
    for i in range(12):
        (obj,) = data.trajectories(i)
        area = coverage(obj["shape"], obj["positions"], obj["radius"], 32, 32).sum(axis=(1, 2))  # (F,)
        np.testing.assert_allclose(area, np.pi * obj["radius"] ** 2, rtol=0.05)  # never cut by an edge
    assert half_extent("circle", 2.0) == (2.0, 2.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown shape.*hexagon.*circle"):
        MovingShapes(shapes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="sequence of shape names"):
        MovingShapes(shapes="circle")
    with pytest.raises(ValueError, match="num_objects"):
        MovingShapes(num_objects=(2, 1))
    with pytest.raises(ValueError, match="speed_range"):
        MovingShapes(speed_range=(0.5, 2.0))  # pixels instead of fractions of the frame
    with pytest.raises(ValueError, match="resolution"):
        MovingShapes(resolution=(4, 32))
    with pytest.raises(ValueError, match="num_frames"):
        MovingShapes(num_frames=1)
    with pytest.raises(IndexError):
        MovingShapes(size=4)[4]
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_change([np.zeros((3, 1, 8, 8))])
    with pytest.raises(ValueError, match="3 channels"):
        video_features([np.zeros((1, 4, 8, 8))])
    with pytest.raises(ValueError, match=r"batch \(N, C, F, H, W\)"):
        temporal_change(np.zeros((3, 4, 8, 8)))


def test_fast():
    data = MovingShapes(size=64)
    data[0]
    start = time.perf_counter()
    for i in range(64):
        data[i]
    assert time.perf_counter() - start < 1.0


def test_temporal_change_static_vs_moving(clips_a):
    static = np.repeat(clips_a[:8, :, :1], 16, axis=2)  # (8, 3, 16, H, W) one frame held
    assert np.abs(temporal_change(static)).max() < 1e-7
    moving = temporal_change(torch.from_numpy(clips_a))  # a tensor batch works too
    assert moving.shape == (96,) and (moving > 0).all()
    report = temporal_consistency_report(static, clips_a)
    assert report["temporal_change_ratio"] < 1e-6


def test_features_and_frechet(clips_a, clips_b):
    fa, fb = video_features(clips_a), video_features(clips_b)
    assert fa.shape == (96, len(FEATURE_NAMES)) and np.isfinite(fa).all()
    assert frechet_distance(fa, fa) < 1e-6
    noise = np.random.default_rng(0).uniform(0, 1, clips_a.shape).astype(np.float32)
    synth_vs_synth = frechet_distance(fb, fa)
    synth_vs_noise = frechet_distance(video_features(noise), fa)
    assert synth_vs_noise > 100 * synth_vs_synth
    names = dict(zip(FEATURE_NAMES, fa.mean(axis=0)))
    assert 0.9 <= names["blobs_mean"] <= 2.1 and names["flicker_share"] < 0.25


def test_reports_for_two_synth_sets(clips_a, clips_b):
    report = video_report(clips_b, clips_a)
    assert 0.75 < report["temporal_change_ratio"] < 1.33
    assert set(report) == {
        "generated_temporal_change_mean",
        "generated_temporal_change_std",
        "reference_temporal_change_mean",
        "reference_temporal_change_std",
        "temporal_change_ratio",
        "frechet_distance",
        *OBJECT_STABILITY_KEYS,
    }
    assert report["frechet_distance"] < 5.0
    consistency = temporal_consistency_report(list(torch.from_numpy(clips_b)), clips_a)
    assert consistency["temporal_change_ratio"] == pytest.approx(report["temporal_change_ratio"], rel=1e-6)


def _square_clip(frames=8, size=16):
    clip = np.zeros((3, frames, size, size), dtype=np.float32)  # (3, F, H, W) dark background
    clip[0, :, 4:10, 4:10] = 0.9  # a red square in every frame
    return clip


def test_object_stability_names_what_goes_wrong(clips_a):
    steady = object_stability([_square_clip()])
    assert steady == {key: 0.0 for key in OBJECT_STABILITY_KEYS}
    split = _square_clip()
    split[0, 4:, 6:8, :] = 0.0  # from frame 4 on, a dark band cuts the square in two: one change in 7 pairs
    assert object_stability([split])["object_count_change_share"] == pytest.approx(1 / 7)
    fading = _square_clip()
    fading[0, 4:, 4:7, 4:10] = 0.3  # half the square falls below the brightness threshold from frame 4 on
    stats = object_stability([fading])
    assert stats["object_count_change_share"] == 0.0
    assert stats["object_area_change"] == pytest.approx((18 / 7) / ((4 * 36 + 4 * 18) / 8))
    drifting = _square_clip()
    drifting[2, :, 4:10, 4:10] = np.linspace(0.0, 0.7, 8)[:, None, None]  # red turns magenta, 0.1 a frame
    stats = object_stability([drifting])
    assert stats["object_area_change"] == 0.0
    assert stats["object_colour_change"] == pytest.approx(0.1 / 3, rel=1e-5)  # one channel of three changes
    real = object_stability(clips_a)  # the data: objects change only where they touch or cross
    assert real["object_count_change_share"] < 0.1 and real["object_area_change"] < 0.1
    assert real["object_colour_change"] < 0.03


def _caption_words_are_true(caption, attributes):
    """Every canonical word of ``caption`` (shape, palette colour, number, direction, speed) is true of the clip."""
    import re

    from mmdiff.modalities.video.synth import NUMBER_WORDS, PALETTE

    words = re.findall(r"[a-z]+", caption)
    shapes = {w.rstrip("s") for w in words if w.rstrip("s") in SHAPES}
    assert shapes == {attributes["shape"]}, caption  # the shape is always named, and only the true one
    assert {w for w in words if w in PALETTE} <= set(attributes["colours"]), caption
    numbers = {NUMBER_WORDS.index(w) for w in words if w in NUMBER_WORDS}
    assert numbers <= {attributes["count"]}, caption
    parts = {part for d in attributes["directions"] for part in d.split("-")}
    assert {w for w in words if w in ("left", "right", "up", "down")} <= parts, caption
    assert {w for w in words if w in ("slow", "fast")} <= set(attributes["speeds"]), caption


def test_captions_vary_with_the_item_seed_and_tell_the_truth():
    from mmdiff.modalities.video.synth import PALETTE

    data = MovingShapes(size=12, num_frames=8, resolution=(16, 16), colours=list(PALETTE), seed=4)
    item = data[(3, 99)]
    assert isinstance(item["caption"], str) and item["caption"] == data[(3, 99)]["caption"]  # deterministic
    assert data[3]["caption"] == data.caption(3)
    phrasings = {data[(3, s)]["caption"] for s in range(40)}
    assert len(phrasings) >= 15  # templates, synonyms, subsets and order vary
    assert all(torch.equal(data[(3, s)]["video"], item["video"]) for s in range(3))  # pixels ignore the item seed
    seen = set()
    for i in range(12):
        attributes = data.attributes(i)
        assert attributes["count"] == len(data.trajectories(i)) and None not in attributes["colours"]
        for s in range(25):
            caption = data[(i, s)]["caption"]
            _caption_words_are_true(caption, attributes)
            seen |= set(caption.split())
    assert {"left", "right", "up", "down", "one", "two"} <= seen and seen & {"slow", "fast"}
    assert len(seen & set(PALETTE)) >= 4


def test_colours_drawn_inside_their_ranges_and_off_palette_hues_unnamed():
    from mmdiff.modalities.video.synth import PALETTE, hue_distance, palette_name, rgb_to_hue

    data = MovingShapes(size=40, colours=["red", "blue"], seed=5)
    drawn = set()
    for i in range(40):
        for obj, name in zip(data.trajectories(i), data.attributes(i)["colours"]):
            assert name in ("red", "blue") and hue_distance(obj["hue"], name) == 0.0
            np.testing.assert_allclose(rgb_to_hue(np.array(obj["colour"])), obj["hue"], atol=1e-9)
            drawn.add(name)
    assert drawn == {"red", "blue"}
    free = MovingShapes(size=40, seed=5)  # colours=None: any hue, and a caption only names palette hues
    names = [n for i in range(40) for n in free.attributes(i)["colours"]]
    assert None in names and set(names) - {None} <= set(PALETTE)
    assert palette_name(0.5) is None and palette_name(0.5, strict=False) in ("green", "blue")
    for lo_hi in PALETTE.values():  # disjoint ranges with gaps
        others = [r for r in PALETTE.values() if r != lo_hi]
        assert all(min(abs(lo_hi[0] - o[1]), abs(o[0] - lo_hi[1]), abs(lo_hi[0] + 1 - o[1])) >= 0.03 for o in others)
    with pytest.raises(ValueError, match="unknown colour.*magenta.*palette"):
        MovingShapes(colours=["red", "magenta"])
    with pytest.raises(ValueError, match="colours: need a non-empty sequence"):
        MovingShapes(colours="red")
