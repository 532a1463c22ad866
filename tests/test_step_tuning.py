"""Tuned step schedules: the fit beats its starting schedule on held-out noise; stored with the run, loaded, used by
generation by default, turned off on request; ``mmdiff tune-steps`` makes them."""

import json
import logging

import numpy as np
import pytest
import torch
from _helpers import train_tiny_run

import mmdiff
from mmdiff.checkpoints import STEP_SCHEDULES, CheckpointError, read_step_schedules, write_step_schedule
from mmdiff.cli import main
from mmdiff.core import GaussianMixture, sample, sigmas_for, tune_sigmas
from mmdiff.core.step_tuning import logits_from_sigmas, reference_sigmas, schedule_error, sigmas_from_logits


@pytest.fixture
def one_thread():
    """Tiny denoiser calls on one torch thread: two OpenMP threads on a busy 2-core machine made this test 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mixture", [GaussianMixture.uneven(), GaussianMixture.ring()], ids=["uneven", "ring"])
def test_tuned_sigmas_beat_the_start_on_held_out_noise(mixture, one_thread):
    """Fit 8 dpmpp_2m steps on 128 calibration noises; the distance to the 100-step result from the same noise, on
    1024 other noises, must drop well below the Karras start's (measured: uneven 0.28 -> 0.11, ring 0.37 -> 0.02)."""
    steps, start = 8, sigmas_for(None, 8, "karras", sigma_min=0.002, sigma_max=80.0)
    info = {}
    tuned = tune_sigmas(
        mixture.denoise, (128, 2), steps, sigmas_init=start, seeds=range(128), evaluations=80, info=info
    )
    assert tuned.dtype == torch.float64 and tuned.shape == (steps + 1,)
    assert tuned[0] == start[0] and tuned[-1] == 0 and (tuned[1:] < tuned[:-1]).all()
    assert tuned[-2] >= start[-2]  # the fit stays inside the start's range
    assert info["evaluations"] <= 80 and info["error_after"] < info["error_before"]

    held = list(range(5000, 6024))
    reference = sample(mixture.denoise, (1024, 2), seed=held, sigmas=reference_sigmas(start, 100))
    before = schedule_error(sample(mixture.denoise, (1024, 2), seed=held, sigmas=start), reference)
    after = schedule_error(sample(mixture.denoise, (1024, 2), seed=held, sigmas=tuned), reference)
    assert after < 0.6 * before, (before, after)


def test_logits_round_trip_and_every_candidate_is_a_valid_list():
    start = sigmas_for(None, 6, "karras")
    theta = logits_from_sigmas(start, float(start[-2]) / 2)
    assert torch.allclose(sigmas_from_logits(float(start[0]), float(start[-2]) / 2, theta), start, rtol=1e-9)
    rng = np.random.default_rng(0)
    for scale in (1.0, 30.0, 1e4):  # wild candidates, clipped logits included
        sig = sigmas_from_logits(80.0, 0.002, rng.normal(size=5) * scale)
        assert sig[0] == 80 and sig[-1] == 0 and (sig[1:] < sig[:-1]).all() and sig[-2] >= 0.002 * (1 - 1e-12)


def test_tune_sigmas_refuses_a_bad_start():
    mixture = GaussianMixture.ring()
    with pytest.raises(ValueError, match="sigmas_init has 5 values, expected steps \\+ 1 = 7"):
        tune_sigmas(mixture.denoise, (4, 2), 6, sigmas_init=sigmas_for(None, 4), seeds=range(4))
    with pytest.raises(ValueError, match="3 seeds for a calibration batch of 4"):
        tune_sigmas(mixture.denoise, (4, 2), 4, sigmas_init=sigmas_for(None, 4), seeds=range(3))


def test_schedules_are_stored_atomically_merged_and_checked(tmp_path):
    assert read_step_schedules(tmp_path) == {}
    write_step_schedule(tmp_path, "dpmpp_2m", 3, [10.0, 1.0, 0.1, 0.0], {"error_after": 0.1})
    write_step_schedule(tmp_path, "dpmpp_2m", 2, [10.0, 0.5, 0.0], {})
    write_step_schedule(tmp_path, "euler", 2, [10.0, 0.7, 0.0], {})
    write_step_schedule(tmp_path, "dpmpp_2m", 2, [10.0, 0.4, 0.0], {"error_after": 0.2})  # replaces
    stored = read_step_schedules(tmp_path)
    assert stored["dpmpp_2m"]["2"] == {"sigmas": [10.0, 0.4, 0.0], "fitted": {"error_after": 0.2}}
    assert stored["dpmpp_2m"]["3"]["sigmas"] == [10.0, 1.0, 0.1, 0.0] and stored["euler"]["2"]["sigmas"][1] == 0.7
    assert [p.name for p in tmp_path.iterdir()] == [STEP_SCHEDULES]  # no temporary file left behind
    (tmp_path / STEP_SCHEDULES).write_text('{"euler": {"2": {"sigmas": [1.0, 2.0, 0.0]}}}')
    with pytest.raises(CheckpointError, match=r"step_schedules.json: euler.2: expected sigmas: .* decreasing"):
        read_step_schedules(tmp_path)
    (tmp_path / STEP_SCHEDULES).write_text('{"euler": ')
    with pytest.raises(CheckpointError, match="step_schedules.json: incomplete or corrupt JSON"):
        read_step_schedules(tmp_path)


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    """A tiny label-conditioned points run (generate defaults: dpmpp_2m, 4 trailing steps, guidance 2)."""
    return train_tiny_run(tmp_path_factory.mktemp("tune") / "points", "points_config.yaml", steps=3)


def test_a_stored_schedule_is_loaded_used_by_default_and_turned_off(points_run, tmp_path, caplog, one_thread):
    run = tmp_path / "run"
    run.mkdir()
    for item in points_run.iterdir():  # this test's own copy of the run, to write a schedule into
        (run / item.name).symlink_to(item)
    tuned = [60.0, 3.0, 0.8, 0.05, 0.0]
    write_step_schedule(run, "dpmpp_2m", 4, tuned, {"error_before": 0.3, "error_after": 0.1, "guidance_scale": 2.0})
    pipe = mmdiff.load(run, device="cpu")
    assert pipe.tuned_schedule("dpmpp_2m", 4)["sigmas"] == tuned and pipe.tuned_schedule("dpmpp_2m", 5) is None

    common = {"seed": 3, "label": 2, "progress": False}
    with caplog.at_level(logging.INFO, logger="mmdiff"):
        used = pipe.generate(2, **common)
    assert used.sigmas == tuned
    assert "using the tuned 4-step schedule for dpmpp_2m" in caplog.text and "tuned=false" in caplog.text
    explicit = pipe.generate(2, sigmas=tuned, **common)  # steps follows the list's length
    off = pipe.generate(2, tuned=False, **common)
    own_spacing = pipe.generate(2, spacing="karras", **common)
    other_steps = pipe.generate(2, steps=5, **common)
    assert off.sigmas is None and own_spacing.sigmas is None and other_steps.sigmas is None
    assert np.array_equal(np.stack(used), np.stack(explicit))
    assert not np.allclose(np.stack(used), np.stack(off), atol=1e-4)
    with pytest.raises(ValueError, match=r"sigmas: expected steps \+ 1 = 4 decreasing numbers ending at 0"):
        pipe.generate(2, sigmas=[5.0, 1.0, 0.0], steps=3)

    plain = mmdiff.load(points_run, device="cpu")  # the run without the file: nothing tuned
    assert plain.step_schedules == {} and plain.generate(2, **common).sigmas is None


def test_tune_steps_command_writes_a_schedule_that_sample_uses(points_run, tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    run.mkdir()
    for item in points_run.iterdir():
        (run / item.name).symlink_to(item)
    argv = ["tune-steps", f"run={run}", "steps=4", "n=8", "evaluations=30", "reference_steps=40", "progress=false"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dpmpp_2m, 4 steps, 8 calibration samples (seeds 10000..)" in out and f"wrote {run / STEP_SCHEDULES}" in out
    entry = json.loads((run / STEP_SCHEDULES).read_text())["dpmpp_2m"]["4"]
    fitted = entry["fitted"]
    assert fitted["error_after"] < fitted["error_before"] and fitted["guidance_scale"] == 2.0
    assert fitted["calibration"] == 8 and fitted["reference_steps"] == 40 and fitted["checkpoint"] == "step_000003"
    assert fitted["start"]["spacing"] == "trailing" and entry["sigmas"][0] == fitted["start"]["sigmas"][0]
    assert mmdiff.load(run, device="cpu").generate(2, progress=False).sigmas == entry["sigmas"]

    assert main(["sample", f"run={run}", "n=2", f"out={tmp_path / 'off'}", "tuned=false", "progress=false"]) == 0
    for bad, message in [
        (["steps=1"], "steps: a schedule of 1 step has no inner noise level"),
        (["steps=4", "strength=0.5"], "strength: mmdiff tune-steps fits plain generation's noise levels"),
        (["n=4"], "steps=N is required"),
        (["steps=4", "evaluations=0"], "evaluations: expected a whole number >= 1, got 0"),
    ]:
        assert main(["tune-steps", f"run={run}", *bad]) == 2
        assert message in capsys.readouterr().err
