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
    """Hydra task: build the components of ``cfg`` and train them."""
    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from .core import resolve_sampler
    from .train import Trainer

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resolve_sampler(cfg.generate.sampler)  # fail now, not at the first demo samples, on a bad sampler name
    torch.manual_seed(cfg.trainer.seed)
    schedule = instantiate(cfg.schedule)
    dataset = instantiate(cfg.data)
    found = getattr(dataset, "num_classes", None)
    if found is not None and cfg.num_classes and found != cfg.num_classes:
        raise ValueError(f"num_classes={cfg.num_classes} but the data has {found} classes; set num_classes={found}")
    settings: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = Trainer(
        adapter=instantiate(cfg.adapter),
        net=instantiate(cfg.net),
        dataset=dataset,
        objective=instantiate(cfg.objective, schedule=schedule),
        optimizer=instantiate(cfg.optim),
        run_dir=run_dir,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        generate=OmegaConf.to_container(cfg.generate, resolve=True),
        **settings,
    )
    trainer.fit()
    print(f"run finished: {run_dir}")


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
    conf_dir, _ = config_dirs()
    saved = sys.argv
    sys.argv = ["mmdiff train", *rest]
    try:
        hydra.main(config_path=str(conf_dir), config_name="config", version_base="1.3")(run_training)()
    finally:
        sys.argv = saved
    return 0


# ---- sample --------------------------------------------------------------------------------------------------------
# options of every command that generates from a run
RUN_KEYS = {
    "run",
    "n",
    "out",
    "steps",
    "sampler",
    "spacing",
    "seed",
    "guidance_scale",
    "guidance_rescale",
    "device",
    "ema",
}
SAMPLE_KEYS = RUN_KEYS | {"length", "label", "progress", "init", "strength", "keep"}


def parse_key_values(argv: list[str], allowed: set[str]) -> dict[str, Any]:
    """``key=value`` arguments with YAML-typed values; unknown keys are an error that lists the allowed ones."""
    out: dict[str, Any] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {arg!r}")
        if key not in allowed:
            raise SystemExit(f"unknown option {key!r}; options: {', '.join(sorted(allowed))}")
        out[key] = yaml.safe_load(value)
    return out


def _load_for(command: str, argv: list[str], allowed: set[str]):
    """Parse ``key=value`` options of ``command`` and load the run they name: ``(pipeline, remaining options)``."""
    opts = parse_key_values(argv, allowed)
    if "run" not in opts:
        raise SystemExit(f"mmdiff {command}: run=PATH is required (a run directory or a checkpoint folder)")
    from .pipeline import load

    return load(str(opts.pop("run")), device=opts.pop("device", None), ema=bool(opts.pop("ema", True))), opts


def _usage(command: str, allowed: set[str], argv: list[str]) -> int | None:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {COMMANDS[command]}\noptions: {', '.join(sorted(allowed))}")
        return 0 if argv else 2
    return None


def _sample(argv: list[str]) -> int:
    if (code := _usage("sample", SAMPLE_KEYS, argv)) is not None:
        return code
    pipe, opts = _load_for("sample", argv, SAMPLE_KEYS)
    n, out = int(opts.pop("n", 4)), Path(str(opts.pop("out", "samples")))
    if "init" in opts:
        opts["init"] = str(opts["init"])
    if "keep" in opts:
        opts["keep"] = tuple(opts["keep"])
    items = pipe.generate(n, progress=bool(opts.pop("progress", True)), **opts)
    for path in pipe.save(items, out):
        print(path)
    return 0


# ---- eval ----------------------------------------------------------------------------------------------------------
EVAL_KEYS = RUN_KEYS


def _eval(argv: list[str]) -> int:
    import json

    from hydra.utils import instantiate

    if (code := _usage("eval", EVAL_KEYS, argv)) is not None:
        return code
    pipe, opts = _load_for("eval", argv, EVAL_KEYS)
    if not hasattr(pipe.adapter, "evaluate"):
        raise SystemExit(f"mmdiff eval: {type(pipe.adapter).__name__} has no evaluate method")
    out = opts.pop("out", None)
    dataset = instantiate(pipe.config.data)
    report = pipe.adapter.evaluate(pipe, dataset, **opts)
    metrics = sorted({k for row in report.values() for k in row})
    name_width, col_width = max(map(len, metrics)) + 2, max(16, *(len(n) + 2 for n in report))
    print(f"{'':<{name_width}}" + "".join(f"{name:>{col_width}}" for name in report))
    for metric in metrics:
        print(
            f"{metric:<{name_width}}"
            + "".join(f"{row.get(metric, float('nan')):>{col_width}.4f}" for row in report.values())
        )
    if out:
        Path(str(out)).write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mmdiff <command> [options]\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<8}{text}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    handlers = {"train": _train, "sample": _sample, "eval": _eval, "demo": _demo}
    if command not in handlers:
        print(f"mmdiff: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return handlers[command](rest)


if __name__ == "__main__":
    sys.exit(main())
