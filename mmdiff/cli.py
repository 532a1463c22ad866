"""The ``mmdiff`` command line.

* ``mmdiff train recipe=NAME key=value ...``: train with Hydra (``--cfg job`` prints the resolved config;
  ``--recipes DIR`` adds a folder of your own recipes; a bare ``mmdiff train`` lists the recipes);
* ``mmdiff sample run=PATH n=4 out=DIR key=value ...``: generate media from a trained run;
* ``mmdiff tune-steps run=PATH steps=10 ...``: fit the run's noise levels for a few-step sampler (stored with the run,
  used by ``mmdiff sample`` and ``pipe.generate`` for that sampler and step count);
* ``mmdiff demo``: the core's samplers on a known distribution;
* ``mmdiff prepare recipe=NAME data.root=PATH ...``: decode a folder once into the prepared store that training with
  ``data.folder.prepare=true`` reads (:mod:`mmdiff.modalities.prepared`);
* ``mmdiff write-shards recipe=NAME data.root=PATH out=DIR_OR_URL``: write a folder as WebDataset-style tar shards
  that training with ``data.shards=DIR_OR_URL`` streams (:mod:`mmdiff.modalities.shards`).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

COMMANDS = {
    "train": "train a recipe: mmdiff train recipe=NAME [key=value ...]",
    "sample": "generate from a trained run: mmdiff sample run=PATH n=4 out=DIR [key=value ...]",
    "eval": "score a trained run's samples against its data: mmdiff eval run=PATH n=32 [out=report.json]",
    "tune-steps": "fit a run's noise levels for few steps: mmdiff tune-steps run=PATH steps=10 [sampler=NAME n=16 ...]",
    "demo": "sample a known distribution with the core's samplers and report their accuracy",
    "prepare": "decode a folder once for fast training: mmdiff prepare recipe=NAME data.root=PATH [--rebuild] [...]",
    "write-shards": "a folder as WebDataset-style tar shards: mmdiff write-shards recipe=NAME data.root=PATH out=DIR_OR_URL",
}


# ---- train ---------------------------------------------------------------------------------------------------------
def _split_recipe_dirs(argv: list[str]) -> tuple[list[str], list[str]]:
    dirs, rest, it = [], [], iter(argv)
    for arg in it:
        if arg == "--recipes":
            value = next(it, None)
            if value is None:
                raise SystemExit("mmdiff train: --recipes needs a folder")
            dirs.append(value)
        elif arg.startswith("--recipes="):
            dirs.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return dirs, rest


def _print_recipes(recipes: dict[str, Path]) -> None:
    from .configs import recipe_summary

    print("usage: mmdiff train recipe=NAME [key=value ...]\n\nrecipes:")
    width = max((len(n) for n in recipes), default=0)
    for name, path in recipes.items():
        print(f"  {name:<{width}}  {recipe_summary(path)}")
    print("\n--cfg job prints the resolved config; --recipes DIR adds your own recipe folder.")


def run_training(cfg) -> None:
    """Hydra task: build the components of ``cfg`` and train them. User errors end in one line (exit code 2)."""
    with _user_errors("train"):
        _run_training(cfg)


def _run_training(cfg) -> None:
    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from .components import build_network, build_objective, generate_defaults, resolve_classes
    from .train import Trainer

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    defaults = generate_defaults(cfg)
    defaults.check()  # fail now, not at the first demo samples, on a bad sampler name or option
    torch.manual_seed(cfg.trainer.seed)
    dataset = instantiate(cfg.data)
    resolve_classes(cfg, dataset)  # num_classes: auto -> the data's; before the net and conditioner read it
    settings: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)
    conditioner = instantiate(cfg.conditioner)
    trainer = Trainer(
        adapter=instantiate(cfg.adapter),
        conditioner=conditioner,
        net=build_network(cfg, conditioner),
        dataset=dataset,
        objective=build_objective(cfg),
        optimizer=instantiate(cfg.optim),
        run_dir=run_dir,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        generate=defaults,
        **settings,
    )
    trainer.fit()
    print(f"run finished: {run_dir}")


def _check_writable(run_dir: str) -> None:
    """Refuse, in one line, a ``run_dir`` that cannot be created or written (before Hydra tries and fails deep)."""
    path = Path(run_dir).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a folder" if not existing.is_dir() else "is not writable"
        raise PermissionError(f"run_dir={run_dir}: {existing} {what}; choose another run_dir=PATH")


def _train(argv: list[str]) -> int:
    import hydra

    from .configs import config_dirs, recipe_dirs, register_recipes

    extra, rest = _split_recipe_dirs(argv)
    recipes = register_recipes(recipe_dirs(extra))
    wants_help = any(a.startswith(("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "--resolve")) for a in rest)
    if not any(a.startswith("recipe=") for a in rest) and not wants_help:
        _print_recipes(recipes)
        if rest:
            print("\nmmdiff train: choose a recipe with recipe=NAME", file=sys.stderr)
        return 2 if rest else 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not any(a.startswith("run_dir=") for a in rest):
        print(
            "mmdiff train: several processes need one shared run_dir=PATH (the default is a timestamp, which "
            "each process would compute on its own)",
            file=sys.stderr,
        )
        return 2
    if any(a.startswith(("--cfg", "-c")) for a in rest) and "--resolve" not in rest:
        rest = [*rest, "--resolve"]  # print values, not ${...} interpolations
    else:
        _check_writable(next((a.split("=", 1)[1] for a in rest if a.startswith("run_dir=")), "runs"))
    conf_dir, _ = config_dirs()
    saved = sys.argv
    sys.argv = ["mmdiff train", *rest]
    try:
        hydra.main(config_path=str(conf_dir), config_name="config", version_base="1.3")(run_training)()
    finally:
        sys.argv = saved
    return 0


# ---- sample and eval -----------------------------------------------------------------------------------------------
# keys every command that generates from a run takes besides the generation options and the run's conditions
RUN_KEYS = ("run", "device", "ema", "n", "progress")
SAMPLE_KEYS = (*RUN_KEYS, "out", "overwrite")
EVAL_KEYS = (*RUN_KEYS, "out")
TUNE_KEYS = (*RUN_KEYS, "reference_steps", "evaluations")
#: generation options that tune-steps refuses: editing, and the noise levels it is there to choose
TUNE_REFUSED = ("init", "strength", "keep", "sigmas", "tuned")


#: tune-steps' default base seed: calibration noises apart from the seeds generation uses by default (0, 1, ...)
TUNE_SEED = 10_000

#: Keys whose value is free text, taken as written (a prompt "yes: loud" is not YAML); a list is written [a, b].
TEXT_KEYS = ("prompt", "negative_prompt")


def parse_key_values(argv: list[str]) -> dict[str, Any]:
    """``key=value`` arguments with YAML-typed values (``n=4``, ``keep=[0,1]``, ``label=organ``); prompts are text
    as written unless they are a YAML list (``prompt=[a red circle, a blue square]``)."""
    out: dict[str, Any] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {arg!r}")
        if key in TEXT_KEYS and not value.lstrip().startswith("["):
            out[key] = value
            continue
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out


def _load_for(command: str, given: dict[str, Any]):
    """Load the run that the parsed ``key=value`` options of ``command`` name and check every other key against the
    run's generation options and conditions: ``(pipeline, run options, generation options)``."""
    from .generation import split_options
    from .pipeline import load

    opts = dict(given)
    if "run" not in opts:
        raise ValueError("run=PATH is required (a run directory or a checkpoint folder)")
    own = _own_keys(command)
    if command == "eval":
        for key in ("init", "strength", "keep"):
            if key in opts:
                raise ValueError(f"{key}: mmdiff eval scores plain generation; editing options are for mmdiff sample")
    mine = {k: opts.pop(k) for k in own if k in opts}
    pipe = load(str(mine.pop("run")), device=mine.pop("device", None), ema=bool(mine.pop("ema", True)))
    split_options(opts, pipe.conditioner, extra=own, given=pipe.adapter.given_keys)  # unknown key: one line
    if "n" in mine:
        opts["num_samples"] = mine.pop("n")
    for key in ("keep", "guidance_interval"):
        if isinstance(opts.get(key), list):
            opts[key] = tuple(opts[key])
    if "init" in opts:
        opts["init"] = str(opts["init"])
    return pipe, mine, opts


def _own_keys(command: str) -> tuple[str, ...]:
    return {"sample": SAMPLE_KEYS, "eval": EVAL_KEYS, "tune-steps": TUNE_KEYS}[command]


def _run_dir_of(path: Path) -> Path:
    """The run directory of a run, checkpoint folder or weights file."""
    for candidate in (path, *path.parents):
        if (candidate / "checkpoints").is_dir():
            return candidate
    return path if path.is_dir() else path.parent


def _output_folder(run: Path, out: Any, overwrite: bool, prefix: str = "sample") -> Path:
    """Where ``mmdiff sample`` writes: ``out=`` as given (refused when it holds samples of an earlier call, unless
    ``overwrite=true``, which removes them), else a fresh ``<run>/generated/<time>/``."""
    import time

    if out is None:
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        folder = _run_dir_of(run) / "generated" / stamp
        suffix = 1
        while folder.exists():
            folder, suffix = folder.with_name(f"{stamp}_{suffix}"), suffix + 1
        return folder
    folder = Path(str(out))
    earlier = sorted(p for p in folder.glob(f"{prefix}*") if p.name[len(prefix) : len(prefix) + 1] in ("_", "."))
    if earlier and not overwrite:
        raise ValueError(
            f"out={folder} already holds samples of an earlier call ({earlier[0].name} ...); choose another out= or "
            "add overwrite=true to replace them"
        )
    for old in earlier:
        old.unlink()
    return folder


def _usage(command: str, argv: list[str]) -> int | None:
    if not argv or argv[0] in ("-h", "--help"):
        from .generation import GenerateOptions

        own = _own_keys(command)
        refused = {"num_samples", *(TUNE_REFUSED if command == "tune-steps" else ())}
        options = sorted({*own, *GenerateOptions.keys()} - refused)
        print(
            f"usage: {COMMANDS[command]}\noptions: {', '.join(options)}, and the run's conditions (label=..., prompt=...)"
        )
        return 0 if argv else 2
    return None


def _sample(argv: list[str]) -> int:
    if (code := _usage("sample", argv)) is not None:
        return code
    given = parse_key_values(argv)
    out = _output_folder(Path(str(given.get("run", "."))), given.get("out"), bool(given.get("overwrite")))
    pipe, mine, opts = _load_for("sample", given)
    items = pipe.generate(progress=bool(mine.get("progress", True)), **opts)
    paths = pipe.save(items, out)
    one_per_item = len(paths) == len(items)  # audio, video: a file each; points: one array file for all
    for i, path in enumerate(paths):
        print(f"{path}\t{items.captions[i].replace(chr(10), ', ')}" if one_per_item else path)
    print(f"wrote {len(items)} samples to {out}", file=sys.stderr)
    return 0


def _eval(argv: list[str]) -> int:
    import json

    from hydra.utils import instantiate

    if (code := _usage("eval", argv)) is not None:
        return code
    pipe, mine, opts = _load_for("eval", parse_key_values(argv))
    if pipe.config.get("evaluator") is None:
        raise ValueError(
            "this run's config has no evaluator (evaluator: null); pick one with evaluator=NAME in training"
        )
    evaluator = instantiate(pipe.config.evaluator)
    dataset = instantiate(pipe.config.data)
    if "num_samples" in opts:
        opts["n"] = opts.pop("num_samples")
    report = evaluator(pipe, dataset, **opts)
    metrics = sorted({k for row in report.values() for k in row})
    name_width, col_width = max(map(len, metrics)) + 2, max(16, *(len(n) + 2 for n in report))
    print(f"{'':<{name_width}}" + "".join(f"{name:>{col_width}}" for name in report))
    for metric in metrics:
        print(
            f"{metric:<{name_width}}"
            + "".join(f"{row.get(metric, float('nan')):>{col_width}.4f}" for row in report.values())
        )
    if mine.get("out"):
        Path(str(mine["out"])).write_text(json.dumps(report, indent=2))
        print(f"wrote {mine['out']}")
    return 0


def _tune_steps(argv: list[str]) -> int:
    from .checkpoints import schedules_dir, write_step_schedule
    from .core import tune_sigmas
    from .generation import default_sigmas, guidance_arguments, split_options

    if (code := _usage("tune-steps", argv)) is not None:
        return code
    given = parse_key_values(argv)
    for key in TUNE_REFUSED:
        if key in given:
            raise ValueError(
                f"{key}: mmdiff tune-steps fits plain generation's noise levels; {key} is for mmdiff sample"
            )
    if "steps" not in given:
        raise ValueError("steps=N is required: the number of sampler steps to fit a schedule for (e.g. steps=10)")
    given.setdefault("n", 16)
    given.setdefault("seed", TUNE_SEED)
    pipe, mine, opts = _load_for("tune-steps", given)
    chosen, request = split_options(opts, pipe.conditioner)
    options = pipe.defaults.replace(**chosen, tuned=False, sigmas=None)
    options.check()
    if options.steps < 2:
        raise ValueError(f"steps: a schedule of {options.steps} step has no inner noise level to fit; use steps >= 2")
    if options.sampler.startswith("diffusers:"):
        raise ValueError(f"sampler: {options.sampler} chooses its own noise levels; tune an mmdiff sampler")
    reference_steps, evaluations = mine.get("reference_steps", 100), mine.get("evaluations", 200)
    for name, value in (("reference_steps", reference_steps), ("evaluations", evaluations)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a whole number >= 1, got {value!r}")
    n, device = options.num_samples, pipe.device
    cond = pipe.conditioner.request(n, device, **request)
    guidance = guidance_arguments(pipe.conditioner, options, device, request)
    start = default_sigmas(options, pipe.model.schedule)
    info: dict[str, Any] = {}
    sigmas = tune_sigmas(
        pipe.denoiser,
        (n, *pipe.adapter.sample_shape(options.length)),
        options.steps,
        sigmas_init=start,
        seeds=options.seeds(),
        sampler=options.sampler,
        reference_steps=reference_steps,
        cond=cond,
        **guidance,
        evaluations=evaluations,
        noise_prior=pipe.adapter.noise_prior,
        device=device,
        progress=bool(mine.get("progress", True)),
        info=info,
        **options.sampler_options(),
    )
    print(
        f"{options.sampler}, {options.steps} steps, {n} calibration samples (seeds {options.seeds()[0]}..): RMS "
        f"distance to the {reference_steps}-step result from the same noise {info['error_before']:.4g} "
        f"({options.spacing} spacing) -> {info['error_after']:.4g} ({info['evaluations']} sampler runs)"
    )
    if not info["error_after"] < info["error_before"]:
        print(f"no better schedule found: nothing written (try more evaluations=, now {evaluations})")
        return 0
    fitted = {
        "reference_steps": reference_steps,
        "calibration": n,
        "seed": options.seeds()[0],
        "evaluations": info["evaluations"],
        "error_before": info["error_before"],
        "error_after": info["error_after"],
        "start": {"spacing": options.spacing, "sigmas": [float(s) for s in start]},
        "guidance_scale": guidance["guidance_scale"],
        "conditions": dict(request) or "default request",
        "checkpoint": pipe.checkpoint.name if pipe.checkpoint is not None else None,
    }
    path = write_step_schedule(
        schedules_dir(pipe.checkpoint or Path(str(given["run"]))), options.sampler, options.steps, sigmas, fitted
    )
    print("sigmas: " + ", ".join(f"{s:.4g}" for s in sigmas.tolist()))
    print(
        f"wrote {path}: used by mmdiff sample / pipe.generate with sampler={options.sampler} steps={options.steps} "
        "(tuned=false turns it off)"
    )
    return 0


# ---- demo ----------------------------------------------------------------------------------------------------------
def _demo(argv: list[str]) -> int:
    from .core import SAMPLERS

    parser = argparse.ArgumentParser(prog="mmdiff demo", description=COMMANDS["demo"])
    parser.add_argument("--out", default="demo", help="folder for samples.png (default: demo)")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (default: 20)")
    parser.add_argument("--n", type=int, default=8192, help="samples per sampler (default: 8192)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=["ddpm", "euler", "heun", "dpmpp_2m", "dpmpp_3m"],
        choices=sorted(SAMPLERS),
        metavar="NAME",
        help=f"from: {', '.join(SAMPLERS)}",
    )
    args = parser.parse_args(argv)
    from .demo import run_demo

    run_demo(args.out, args.samplers, args.steps, args.n, args.seed)
    return 0


# ---- prepare -------------------------------------------------------------------------------------------------------
PREPARE_USAGE = """usage: mmdiff prepare recipe=NAME data.root=PATH [key=value ...] [--rebuild] [--workers N] [--recipes DIR]

Decodes every file of the folder once at the recipe's settings (sample rate and channels, or frame size) into the
prepared store that `mmdiff train` with the same overrides and data.folder.prepare=true reads; an existing store is
updated (changed, added and removed files only). The store is data.folder.prepared_dir, else a folder of the mmdiff
cache (MMDIFF_CACHE). --rebuild starts it afresh (frees the space of replaced files); --workers N decoding processes
(default: one per CPU core)."""


def _folder_data(overrides: list[str], extra: list[str], purpose: str) -> Any:
    """The ``data`` config of the recipe a user trains with (``recipe=NAME`` + overrides), set to read the folder
    ``data.root`` itself (not its prepared store nor shards), for ``mmdiff prepare`` and ``mmdiff write-shards``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from .configs import config_dirs, recipe_dirs, register_recipes

    if not any(a.startswith("recipe=") for a in overrides):
        raise ValueError("choose a recipe with recipe=NAME (the one you train with); a bare `mmdiff train` lists them")
    register_recipes(recipe_dirs(extra))
    with initialize_config_dir(str(config_dirs()[0]), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    data = cfg.get("data")
    if data is None or "folder" not in data or not data.get("root"):
        raise ValueError(f"data.root=PATH is required: the folder of audio or video files to {purpose}")
    with open_dict(data):
        if "shards" in data:
            data.shards = None
        if "prepare" in data.folder:
            data.folder.prepare = False
    return data


def _prepare(argv: list[str]) -> int:
    """``mmdiff prepare``: build or update the prepared store of ``data.root`` and print its one-line summary."""
    import logging

    from hydra.utils import instantiate

    from .modalities.prepared import prepare

    if not argv or argv[0] in ("-h", "--help"):
        print(PREPARE_USAGE)
        return 0 if argv else 2
    extra, rest = _split_recipe_dirs(argv)
    rebuild, workers, overrides, it = False, None, [], iter(rest)
    for arg in it:
        if arg == "--rebuild":
            rebuild = True
        elif arg == "--workers" or arg.startswith("--workers="):
            value = arg.split("=", 1)[1] if "=" in arg else next(it, "")
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"--workers needs a number of processes >= 1, got {value!r}")
            workers = int(value)
        else:
            overrides.append(arg)
    data = _folder_data(overrides, extra, "prepare")  # the folder itself; the store is built below
    logging.getLogger("mmdiff.data").setLevel(logging.WARNING)  # skipped files, not the summary twice
    folder = instantiate(data)
    prepared = prepare(folder, data.folder.get("prepared_dir"), workers=workers, rebuild=rebuild)
    print(prepared.report.line())
    return 0


# ---- write-shards --------------------------------------------------------------------------------------------------
SHARD_KEYS = ("out", "name", "shard_size", "shard_mb", "workers", "overwrite", "progress")
SHARDS_USAGE = """usage: mmdiff write-shards recipe=NAME data.root=PATH out=DIR_OR_URL [shard_size=1000] [key=value ...]

Writes the folder's files, decoded at the recipe's settings (sample rate and channels, or frame rate and size), with
their captions and labels into WebDataset-style tar shards NAME-000000.tar ... plus shards.json under out= (a folder
or an fsspec URL such as s3://bucket/music). Train on them with data.shards=DIR_OR_URL (mmdiff.modalities.shards).
Options: name=data (shard file prefix), shard_size=1000 (items per shard), shard_mb=1024 (MiB per shard),
workers=4 (decoding threads), overwrite=false, progress=true; other key=value pairs are config overrides."""


def _write_shards(argv: list[str]) -> int:
    """``mmdiff write-shards``: a folder of the recipe's modality -> tar shards + ``shards.json``; one summary line."""
    from hydra.utils import instantiate

    from .modalities.shards import write_shards

    if not argv or argv[0] in ("-h", "--help"):
        print(SHARDS_USAGE)
        return 0 if argv else 2
    extra, rest = _split_recipe_dirs(argv)
    own = parse_key_values([a for a in rest if a.split("=", 1)[0] in SHARD_KEYS])
    overrides = [a for a in rest if a.split("=", 1)[0] not in SHARD_KEYS]
    if not own.get("out"):
        raise ValueError("out=DIR_OR_URL is required: where the shards and shards.json go")
    data = _folder_data(overrides, extra, "write as shards")
    index = write_shards(
        instantiate(data),
        str(own["out"]),
        name=str(own.get("name", "data")),
        shard_size=int(own.get("shard_size", 1000)),
        shard_mb=float(own.get("shard_mb", 1024)),
        workers=int(own.get("workers", 4)),
        overwrite=bool(own.get("overwrite", False)),
        progress=bool(own.get("progress", True)),
    )
    print(index["summary"])
    return 0


# ---- errors --------------------------------------------------------------------------------------------------------
def _debug() -> bool:
    """Tracebacks for user errors too: ``--debug`` or ``HYDRA_FULL_ERROR=1``."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("MMDIFF_DEBUG") == "1"


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input was wrong (a value, a path, a config key), not that mmdiff has a bug."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .train import NonFiniteLossError

    return (ValueError, OSError, HydraException, OmegaConfBaseException, NonFiniteLossError)


@contextmanager
def _user_errors(command: str):
    """Turn a user error into one line on stderr and exit code 2; a bug keeps its traceback. Ctrl-C of training is
    handled by the trainer (it saves and says how to resume); here it ends quietly with the conventional 130."""
    try:
        yield
    except KeyboardInterrupt:
        if _debug():
            raise
        print(f"mmdiff {command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except _user_error_types() as err:
        if _debug():
            raise
        cause = err.__cause__ if isinstance(err.__cause__, _user_error_types()) else None
        text = " ".join(str(err).split()) or type(err).__name__
        if cause is not None and str(cause) not in text:
            text += f" ({' '.join(str(cause).split())})"
        print(f"mmdiff {command}: {text}", file=sys.stderr)
        raise SystemExit(2) from None


def _log_to_stderr() -> None:
    """mmdiff's log lines (which checkpoint was loaded, skipped files, metric warnings) on stderr, one per line."""
    import logging

    logger = logging.getLogger("mmdiff")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv:
        argv.remove("--debug")
        os.environ["MMDIFF_DEBUG"] = "1"
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mmdiff <command> [options]\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<14}{text}")
        print("\n--debug (or HYDRA_FULL_ERROR=1) shows the traceback of an error.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    handlers = {
        "train": _train,
        "sample": _sample,
        "eval": _eval,
        "tune-steps": _tune_steps,
        "demo": _demo,
        "prepare": _prepare,
        "write-shards": _write_shards,
    }
    if command not in handlers:
        print(f"mmdiff: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    # `mmdiff train` logs through Hydra (console and train.log)
    if command in ("sample", "eval", "tune-steps", "prepare", "write-shards"):
        _log_to_stderr()
    try:
        with _user_errors(command):
            return handlers[command](rest)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2


if __name__ == "__main__":
    sys.exit(main())
