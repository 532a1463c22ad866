"""Checkpoints: safetensors weights plus the resumable state as safetensors + JSON, written atomically, last K kept.

Layout of ``<run_dir>/checkpoints/step_000500/``:

* ``model.safetensors``: the raw weights; ``ema.safetensors``: the EMA weights (what generation loads);
* ``state.safetensors`` + ``state.json``: optimizer, LR scheduler, EMA, step and RNG states, for resuming: the
  tensors in the first, everything else (numbers, strings, the nesting) in the second;
* ``config.yaml``: the resolved config, so a checkpoint folder alone can be loaded.

The run directory also holds ``step_schedules.json``: step schedules tuned for the run (``mmdiff tune-steps``), read
by :func:`read_step_schedules` and written atomically by :func:`write_step_schedule`.

Nothing in a checkpoint is unpickled: safetensors, JSON and YAML (safe loader) cannot run code, and a file in a
checkpoint folder that is a pickle (or a ``torch.save`` archive) is refused with an error naming it, so a planted
payload never runs. A checkpoint is written into a hidden temporary folder and renamed into place, so a crash while
saving never leaves a half-written ``step_*`` folder; a folder damaged later (a truncated copy) is skipped, with a
warning, by :func:`newest_checkpoint`, which both resuming and loading use.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

log = logging.getLogger("mmdiff.checkpoints")

_STEP_DIR = re.compile(r"^step_(\d+)$")
WEIGHT_FILES = ("model.safetensors", "ema.safetensors")
STATE_FILES = ("state.safetensors", "state.json")
CHECKPOINT_FILES = (*WEIGHT_FILES, *STATE_FILES, "config.yaml")
_STATE_FORMAT = 1
# a pickle starts with the PROTO opcode (protocol 2+); torch.save writes a zip archive
_PICKLE_MAGIC = (*(bytes([0x80, p]) for p in range(2, 6)), b"PK\x03\x04")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and why."""


class UnsafeCheckpointError(CheckpointError):
    """A file in a checkpoint folder is a pickle: mmdiff refuses it rather than run what it may contain."""


# ---- finding checkpoints ---------------------------------------------------------------------------------------
def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """The ``step_*`` folders of a run, oldest first (complete or not: see :func:`newest_checkpoint`)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (``None`` when it has no ``step_*`` folder yet).

    Incomplete or corrupt folders (a truncated file, a missing one) are skipped with a warning that names the folder
    and why; a run whose folders are all unusable is an error, and so is a pickle file in any folder it looks at."""
    folders = checkpoint_dirs(run_dir)
    reasons = []
    for folder in reversed(folders):
        try:
            check_checkpoint(folder)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            log.warning("skipping checkpoint %s: %s", folder, e)
            reasons.append(str(e))
            continue
        if reasons:
            log.warning("using %s, the newest complete checkpoint", folder)
        return folder
    if folders:
        raise CheckpointError(f"{run_dir}: none of its {len(folders)} checkpoint(s) is complete; newest: {reasons[0]}")
    return None


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint that ``path`` names, checked: a run directory gives its newest complete checkpoint, a
    checkpoint folder or a ``.safetensors`` file is taken as it is. Logs which one it is."""
    path = Path(path)
    if path.is_file():
        _refuse_pickle(path)
        if (path.parent / "config.yaml").is_file():
            refuse_pickles(path.parent)
        _check_safetensors(path)
        found = path
    elif (path / "config.yaml").is_file() and any((path / name).exists() for name in WEIGHT_FILES):
        refuse_pickles(path)
        for name in (*WEIGHT_FILES, *STATE_FILES):
            if (path / name).exists():
                _check_file(path / name)
        found = path
    elif any((path / name).exists() for name in WEIGHT_FILES):
        raise CheckpointError(f"{path / 'config.yaml'} is missing: a checkpoint folder needs its config to be loaded")
    else:
        found = newest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path} has no checkpoints/step_* folder: is it an mmdiff run directory?")
    log.info("using checkpoint %s", found)
    return found


# ---- checking -------------------------------------------------------------------------------------------------
def _looks_pickled(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4).startswith(_PICKLE_MAGIC)


def _refuse_pickle(path: Path) -> None:
    if _looks_pickled(path):
        raise UnsafeCheckpointError(
            f"{path}: a pickle (torch.save) file; mmdiff never unpickles checkpoint files, which could run code "
            "(delete it if you trust the rest of the folder; older mmdiff versions kept the resumable state in state.pt)"
        )


def refuse_pickles(folder: Path) -> None:
    """Raise :class:`UnsafeCheckpointError` naming the first file of ``folder`` that is a pickle."""
    for path in sorted(folder.iterdir()):
        if path.is_file():
            _refuse_pickle(path)


def _check_safetensors(path: Path) -> None:
    try:
        with safe_open(str(path), "pt"):  # reads the header; a truncated file no longer covers its offsets
            pass
    except Exception as e:
        raise CheckpointError(f"{path}: incomplete or corrupt safetensors file ({e})") from None


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    if path.suffix == ".safetensors":
        _check_safetensors(path)
    elif path.suffix == ".json":
        _read_json(path)
    elif path.suffix == ".yaml":
        try:
            yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: incomplete or corrupt YAML ({str(e).splitlines()[0]})") from None


def check_checkpoint(folder: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the first missing, truncated or corrupt file of a checkpoint folder
    (:class:`UnsafeCheckpointError` for a pickle). Reads only the headers of the weight files."""
    folder = Path(folder)
    refuse_pickles(folder)
    for name in CHECKPOINT_FILES:
        _check_file(folder / name)


# ---- saving ---------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The random states of torch, numpy, Python (and CUDA): stored as tensors and plain values."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}  # noqa: NPY002
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """``value`` as JSON, with its tensors moved into ``tensors`` (referenced by name) and the Python types JSON
    lacks (tuples, dicts with non-string keys, numpy arrays) tagged, so that :func:`_decode` rebuilds it exactly."""
    if torch.is_tensor(value):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().cpu().clone().contiguous()  # clone: safetensors refuses shared storage
        return {"__tensor__": name}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {
            "__dict__": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}.{k}")] for k, v in value.items()]
        }
    raise TypeError(f"checkpoint state: {where} is a {type(value).__name__}, which is not stored without pickle")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value["dtype"])
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__dict__"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    state: dict[str, Any],
    config_yaml: str,
    keep: int = 3,
) -> Path:
    """Write checkpoint ``step`` atomically and delete all but the newest ``keep``. Returns its folder.

    ``state`` may hold tensors, numpy arrays, numbers, strings, ``None`` and lists, tuples and dicts of them."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_weights(model), tmp / "model.safetensors", metadata={"step": str(step)})
    save_file(_weights(ema), tmp / "ema.safetensors", metadata={"step": str(step)})
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode({**state, "step": step}, tensors, "state")
    save_file(tensors, tmp / "state.safetensors", metadata={"step": str(step)})
    (tmp / "state.json").write_text(json.dumps({"format": _STATE_FORMAT, "state": encoded}))
    (tmp / "config.yaml").write_text(config_yaml)
    for f in tmp.iterdir():  # make the data durable before the rename publishes it
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ---- loading --------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: incomplete or corrupt JSON ({e})") from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    _refuse_pickle(path)
    try:
        return load_file(path)
    except Exception as e:
        raise CheckpointError(f"{path}: incomplete or corrupt safetensors file ({e})") from None


def load_weights(checkpoint: str | Path, ema: bool = True) -> dict[str, torch.Tensor]:
    """The EMA (default) or raw weights of a checkpoint folder or of a ``.safetensors`` file."""
    path = Path(checkpoint)
    if path.is_dir():
        refuse_pickles(path)
        path = path / ("ema.safetensors" if ema else "model.safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    return _load_safetensors(path)


def load_state(checkpoint: str | Path) -> dict[str, Any]:
    """The resumable state saved with a checkpoint (optimizer, LR scheduler, EMA, RNG, ``step``)."""
    folder = Path(checkpoint)
    refuse_pickles(folder)
    missing = [name for name in STATE_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{checkpoint} is not a resumable checkpoint: {missing[0]} is missing")
    saved = _read_json(folder / "state.json")
    if not isinstance(saved, dict) or saved.get("format") != _STATE_FORMAT:
        raise CheckpointError(f"{folder / 'state.json'}: not an mmdiff state file of format {_STATE_FORMAT}")
    return _decode(saved["state"], _load_safetensors(folder / "state.safetensors"))


# ---- tuned step schedules -------------------------------------------------------------------------------------
STEP_SCHEDULES = "step_schedules.json"


def schedules_dir(checkpoint: str | Path) -> Path:
    """Where the tuned step schedules of a loaded checkpoint live: its run directory when the checkpoint sits in one
    (``<run>/checkpoints/step_N``), else the checkpoint's own folder (a folder copied out of its run)."""
    folder = Path(checkpoint)
    folder = folder.parent if folder.is_file() else folder
    if folder.parent.name == "checkpoints" and _STEP_DIR.match(folder.name):
        return folder.parent.parent
    return folder


def read_step_schedules(run_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The tuned step schedules of a run (``<run_dir>/step_schedules.json``; ``{}`` when it has none).

    Layout: ``{sampler: {str(steps): {"sigmas": [steps + 1 floats, decreasing, last 0], "fitted": {...}}}}``, where
    ``fitted`` says how the list was made (reference steps, calibration size, errors before and after, guidance
    scale, starting spacing, checkpoint). Plain JSON: reading it runs nothing. A damaged file or a malformed entry is
    a :class:`CheckpointError` naming the file and the entry."""
    path = Path(run_dir) / STEP_SCHEDULES
    if not path.is_file():
        return {}
    data = _read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected an object {{sampler: {{steps: {{sigmas, fitted}}}}}}")
    for sampler, by_steps in data.items():
        if not isinstance(by_steps, dict):
            raise CheckpointError(f"{path}: {sampler}: expected an object {{steps: {{sigmas, fitted}}}}")
        for steps, entry in by_steps.items():
            sigmas = entry.get("sigmas") if isinstance(entry, dict) else None
            ok = (
                steps.isdigit()
                and isinstance(sigmas, list)
                and len(sigmas) == int(steps) + 1
                and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in sigmas)
                and sigmas[-1] == 0
                and all(a > b for a, b in pairwise(sigmas))
            )
            if not ok:
                raise CheckpointError(
                    f"{path}: {sampler}.{steps}: expected sigmas: a list of steps + 1 decreasing numbers ending at 0"
                )
    return data


def write_step_schedule(
    run_dir: str | Path, sampler: str, steps: int, sigmas: list[float], fitted: dict[str, Any]
) -> Path:
    """Add (or replace) the tuned schedule for ``(sampler, steps)`` in ``<run_dir>/step_schedules.json``, keeping the
    others; written to a temporary file and renamed into place, so a crash never leaves a half-written file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory")
    data = read_step_schedules(run_dir)
    data.setdefault(sampler, {})[str(int(steps))] = {"sigmas": [float(s) for s in sigmas], "fitted": dict(fitted)}
    ordered = {s: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for s, v in sorted(data.items())}
    final = run_dir / STEP_SCHEDULES
    tmp = run_dir / f".{STEP_SCHEDULES}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(ordered, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final
