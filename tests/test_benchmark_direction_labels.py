"""benchmarks/direction_labels.py: the moving shapes labelled by the direction of their one object."""

from __future__ import annotations

import torch
from _helpers import load_benchmark

from mmdiff.modalities.video.synth import DIRECTIONS


def test_one_object_clips_carry_their_direction_and_the_others_class_eight():
    bench = load_benchmark("direction_labels")
    data = bench.make(num_frames=4, resolution=(16, 16), synth={"size": 24, "bounce": False, "colours": ["red"]})
    assert data.num_classes == 9 and data.class_names[-1] == "many" and len(data) == 24
    counts = set()
    for index in range(len(data)):
        item, attributes = data[index], data.shapes.attributes(index)
        counts.add(attributes["count"])
        expected = DIRECTIONS.index(attributes["directions"][0]) if attributes["count"] == 1 else 8
        assert item["label"].dtype == torch.int64 and int(item["label"]) == expected
        assert item["caption"] == data.shapes[index]["caption"]  # everything else is the synth's
    assert counts == {1, 2}
    assert data.item_key(3) == data.shapes.item_key(3)
