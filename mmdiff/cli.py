"""The ``mmdiff`` command line.

* ``mmdiff train recipe=NAME key=value ...``: train with Hydra (``--cfg job`` prints the resolved config;
  ``--recipes DIR`` adds a folder of your own recipes; a bare ``mmdiff train`` lists the recipes);
* ``mmdiff sample run=PATH n=4 out=DIR key=value ...``: generate media from a trained run;
* ``mmdiff demo``: the core's samplers on a known distribution.
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
    "demo": "sample a known distribution with the core's samplers and report their accuracy",
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

    from .components import build_model, build_network, generate_defaults, resolve_classes
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
        objective=instantiate(cfg.objective, model=build_model(cfg)),
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
    own = SAMPLE_KEYS if command == "sample" else EVAL_KEYS
    if command == "eval":
        for key in ("init", "strength", "keep"):
            if key in opts:
                raise ValueError(f"{key}: mmdiff eval scores plain generation; editing options are for mmdiff sample")
    mine = {k: opts.pop(k) for k in own if k in opts}
    pipe = load(str(mine.pop("run")), device=mine.pop("device", None), ema=bool(mine.pop("ema", True)))
    split_options(opts, pipe.conditioner, extra=own)  # an unknown key: one line listing the valid ones
    if "n" in mine:
        opts["num_samples"] = mine.pop("n")
    for key in ("keep", "guidance_interval"):
        if isinstance(opts.get(key), list):
            opts[key] = tuple(opts[key])
    if "init" in opts:
        opts["init"] = str(opts["init"])
    return pipe, mine, opts


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

        own = SAMPLE_KEYS if command == "sample" else EVAL_KEYS
        options = sorted({*own, *GenerateOptions.keys()} - {"num_samples"})
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
            print(f"  {name:<8}{text}")
        print("\n--debug (or HYDRA_FULL_ERROR=1) shows the traceback of an error.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    handlers = {"train": _train, "sample": _sample, "eval": _eval, "demo": _demo}
    if command not in handlers:
        print(f"mmdiff: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command in ("sample", "eval"):  # `mmdiff train` logs through Hydra (console and train.log)
        _log_to_stderr()
    try:
        with _user_errors(command):
            return handlers[command](rest)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2


if __name__ == "__main__":
    sys.exit(main())
