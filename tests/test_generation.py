"""Generation: one options object for every front end, conditions from the conditioner, reproducible by seed."""

import sys

import numpy as np
import pytest
import torch
from conftest import EXAMPLE

import mmdiff
from mmdiff.conditioners import ClassLabels
from mmdiff.generation import GenerateOptions

RUNS = ["points_ring", "music", "shapes", "images"]  # every modality: the tiny runs of tests/conftest.py


def as_array(item) -> np.ndarray:
    return np.asarray(item.numpy() if torch.is_tensor(item) else item, dtype=np.float64)


def relative_difference(a, b) -> float:
    a, b = as_array(a), as_array(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


@pytest.mark.parametrize("name", RUNS)
def test_a_sample_is_the_same_from_its_seed_alone_or_in_any_batch(doc_runs, name):
    """Noise and decoding (Griffin-Lim's random initial phase included) come from each sample's seed."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    pipe = mmdiff.load(doc_runs / name, device="cpu")
    steps = {"steps": 3, "progress": False}
    batch = pipe.generate(3, seed=[11, 12, 13], label=[0, 1, 0], **steps)
    alone = pipe.generate(1, seed=[12], label=1, **steps)
    torch.manual_seed(123)  # the global RNG state must not matter
    again = pipe.generate(3, seed=11, label=[0, 1, 0], **steps)  # seed 11 = seeds 11, 12, 13
    # equal up to float rounding of batched matmuls (different seeds differ by O(1): audio before the fix by 1.41)
    assert relative_difference(batch[1], alone[0]) < 1e-3
    assert all(relative_difference(a, b) < 1e-3 for a, b in zip(batch, again))
    assert batch.seeds == [11, 12, 13] and "seed 12" in batch.captions[1]
    assert relative_difference(batch[0], batch[2]) > 1e-2  # other seeds, other samples


def test_every_sampler_option_is_reachable_and_unknown_keys_are_named(doc_runs):
    pipe = mmdiff.load(doc_runs / "points_ring", device="cpu")
    sde = pipe.generate(2, sampler="dpmpp_2m_sde", eta=0.5, steps=3, progress=False)
    calm = pipe.generate(2, sampler="dpmpp_2m_sde", eta=0.0, steps=3, progress=False)
    assert len(sde) == 2 and not np.allclose(sde[0], calm[0])  # eta reached the sampler
    pipe.generate(2, sampler="heun", s_churn=1.0, s_noise=1.0, steps=2, progress=False)
    unipc = pipe.generate(2, sampler="unipc", steps=4, progress=False)
    first_order = pipe.generate(2, sampler="unipc", order=1, variant="bh1", steps=4, progress=False)
    assert not np.allclose(unipc[0], first_order[0])  # order and variant reached the sampler
    with pytest.raises(ValueError, match=r"order: sampler 'euler' does not take it"):
        pipe.generate(2, sampler="euler", order=2)
    narrow = pipe.generate(2, sigma_min=0.5, sigma_max=1.0, spacing="karras", guidance_interval=(0.1, 1.0), steps=2)
    assert len(narrow) == 2
    with pytest.raises(ValueError, match=r"unknown option 'etta'; valid options: .*\beta\b.*\blabel\b"):
        pipe.generate(2, etta=0.5)
    with pytest.raises(ValueError, match=r"eta: sampler 'dpmpp_2m' does not take it"):
        pipe.generate(2, sampler="dpmpp_2m", eta=0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_samples": 0}, r"n \(num_samples\): expected a whole number >= 1, got 0"),
        ({"steps": -2}, "steps: expected a whole number >= 1"),
        ({"guidance_scale": -1.0}, "guidance_scale: expected a number >= 0"),
        ({"length": -3.0}, "length: expected a positive number"),
        ({"sampler": "nope"}, "unknown sampler 'nope'"),
        ({"spacing": "odd"}, "spacing: expected one of exponential, karras"),
        ({"strength": 0.5}, "init: strength < 1 and keep"),
        ({"seed": [1, 2]}, "seed: expected one integer or 4"),
        ({"keep": (3, 1), "init": "x.wav"}, r"keep: expected 0 <= start < end"),
        ({"order": 4}, "order: expected 1, 2 or 3, got 4"),
        ({"variant": "bh3"}, "variant: expected bh1 or bh2, got 'bh3'"),
        ({"first": ""}, "first: expected the name of a part"),
    ],
)
def test_options_are_checked_before_any_work(options, message):
    with pytest.raises(ValueError, match=message):
        GenerateOptions(**options).check()


def test_unknown_config_keys_and_huge_lengths_are_refused(doc_runs):
    with pytest.raises(ValueError, match=r"generate: unknown option\(s\) \['num_sample'\]; valid options: num_samples"):
        GenerateOptions.from_mapping({"num_sample": 3})
    pipe = mmdiff.load(doc_runs / "music", device="cpu")
    calls = []
    pipe.denoiser = lambda *a, **k: calls.append(1)
    with pytest.raises(ValueError, match=r"n/length: 1 sample\(s\) of shape .* need at least .* GiB"):
        pipe.generate(1, length=1e9)
    assert not calls  # refused before sampling


def test_class_labels_conditioner_requests_names_and_dropout():
    labels = ClassLabels(num_classes=3, names=["sine", "pluck", "organ"], dropout=0.5)
    assert labels.request(4)["label"].tolist() == [0, 1, 2, 0]
    assert labels.request(2, label="organ")["label"].tolist() == [2, 2]
    assert labels.describe({"label": torch.tensor([1, 2])}) == ["pluck", "organ"]
    assert labels.null() == {"label": 3}
    with pytest.raises(ValueError, match=r"label: classes are 0..2 \(or a name: sine, pluck, organ\), got 7"):
        labels.request(1, label=7)
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['prompt'\]; this model takes: label"):
        labels.request(1, prompt="hi")
    with pytest.raises(ValueError, match="label: this model is unconditional"):
        ClassLabels(num_classes=0).request(1, label=0)
    from mmdiff.conditioners import training_conditions

    batch = {"label": torch.zeros(4000, dtype=torch.long)}
    gens = [torch.Generator().manual_seed(i) for i in range(4000)]
    dropped = training_conditions(labels, batch, gens)["label"]
    assert 0.45 < (dropped == 3).float().mean() < 0.55
    again = training_conditions(labels, batch, [torch.Generator().manual_seed(i) for i in range(4000)])["label"]
    assert torch.equal(dropped, again)  # per-sample generators: reproducible
