"""Control for the video text preset's directions (issue 12): does the network follow a direction given as a label?

The text presets follow colour and shape words but not directions. This control takes the text out: the same data
(the text recipe's moving shapes: palette colours, straight paths) with each one-object clip labelled by its 8-way
direction (:data:`~mmdiff.modalities.video.synth.DIRECTIONS`, classes 0-7) and every clip of two or more objects by
class 8, trained by the label recipe's preset with the text preset's network options. ``make`` is the data target:

    PYTHONPATH=benchmarks mmdiff train recipe=video_shapes_cpu run_dir=runs/direction_labels \\
        data._target_=direction_labels.make num_classes=9 \\
        'data.synth.colours=[red,orange,yellow,green,blue,purple]' data.synth.bounce=false \\
        net.positions=true net.frame_embedding=true trainer.max_steps=1250
    PYTHONPATH=benchmarks python benchmarks/direction_labels.py runs/direction_labels

The script then generates 16 clips per direction label (guidance as the run sets it) and reads each clip's direction
with the text evaluator's estimator (:class:`~mmdiff.modalities.video.attributes.VideoAttributeEstimator`, its shape
rule fitted on 96 real clips): the share whose main object moves in the label's direction (chance 1/8). It also
prints the response to the label, ``RMS(D(x; left) - D(x; right)) / RMS(x0)`` on 16 real clips noised to sigma 10,
3 and 1 (as ``benchmarks/prompt_response.py`` does for prompts), so the two kinds of run compare. Prints its rows.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from torch.utils.data import Dataset, default_collate

import mmdiff
from mmdiff.data import first_items
from mmdiff.modalities.video.attributes import VideoAttributeEstimator
from mmdiff.modalities.video.sources import shapes_or_folder
from mmdiff.modalities.video.synth import DIRECTIONS

MANY = len(DIRECTIONS)  # the class of clips with two or more objects


class DirectionLabels(Dataset):
    """The moving shapes with ``label`` = the 8-way direction of a one-object clip, :data:`MANY` otherwise; every
    other attribute (the synth's settings, keys, captions) is the wrapped data set's."""

    reads_files = False

    def __init__(self, shapes: Any):
        self.shapes = shapes
        self.num_classes, self.class_names = MANY + 1, [*DIRECTIONS, "many"]

    def __len__(self) -> int:
        return len(self.shapes)

    def label(self, key) -> int:
        attributes = self.shapes.attributes(self.shapes.clip_index(key))
        return DIRECTIONS.index(attributes["directions"][0]) if attributes["count"] == 1 else MANY

    def __getitem__(self, key) -> dict[str, Any]:
        return {**self.shapes[key], "label": torch.tensor(self.label(key), dtype=torch.int64)}

    def __getattr__(self, name: str) -> Any:  # item_key, render_version, ...: the synth's
        if name == "shapes":
            raise AttributeError(name)
        return getattr(self.shapes, name)


def make(**settings: Any) -> DirectionLabels:
    """The data target: ``shapes_or_folder``'s settings (the built-in synth only)."""
    return DirectionLabels(shapes_or_folder(**settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run trained with data._target_=direction_labels.make")
    parser.add_argument("--per-label", type=int, default=16)
    args = parser.parse_args()

    pipe = mmdiff.load(args.run, device="cpu")
    data = instantiate(pipe.config.data)
    estimator = VideoAttributeEstimator.from_synth(data.shapes, n=96)
    hits = 0
    for k, name in enumerate(DIRECTIONS):
        clips = pipe.generate(args.per_label, label=k, seed=100 + k, progress=False)
        read = [e["direction"] for e in estimator.estimate([np.asarray(c) for c in clips])]
        hit = sum(d == name for d in read)
        hits += hit
        print(f"{name}: {hit}/{args.per_label} read as the label")
    print(f"direction: {hits / (args.per_label * len(DIRECTIONS)):.3f} (chance {1 / len(DIRECTIONS):.3f})")

    items = first_items(data, 16, seed=0)
    x0, _ = pipe.adapter.encode(default_collate([{"video": item["video"]} for item in items]))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    scale = x0.pow(2).mean().sqrt()
    pairs = {"left / right": ("left", "right"), "up / down": ("up", "down")}
    with torch.no_grad():
        for sigma in (10.0, 3.0, 1.0):
            x, s = x0 + sigma * noise, torch.full((len(x0),), sigma)
            row = []
            for title, (a, b) in pairs.items():
                ea, eb = (pipe.denoiser(x, s, **pipe.conditioner.request(len(x0), label=w)) for w in (a, b))
                row.append(f"{title} {((ea - eb).pow(2).mean().sqrt() / scale).item():.3f}")
            print(f"response at sigma {sigma:g}: {', '.join(row)}")


if __name__ == "__main__":
    main()
