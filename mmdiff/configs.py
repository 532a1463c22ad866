"""Where mmdiff's Hydra configs live and how recipes join them.

``conf/`` (the primary config and the component groups) and ``recipes/`` (the recipe group) sit at the top of the
repository and are shipped inside the wheel as ``mmdiff/_configs/{conf,recipes}``. Recipes are registered in Hydra's
ConfigStore under the group ``recipe`` (package ``_global_``), from the built-in folder and from any user folders
(``--recipes DIR`` or ``MMDIFF_RECIPE_PATH``), so ``recipe=NAME`` works the same from a checkout or a wheel.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent

# `${mmdiff.mul:a,b}`: a product in a config (e.g. a network's input channels = mel bins x audio channels).
if not OmegaConf.has_resolver("mmdiff.mul"):
    OmegaConf.register_new_resolver("mmdiff.mul", lambda *values: math.prod(values))
# `${mmdiff.add:a,b}`: a sum (e.g. known-frame condition channels = latent channels + 1 mask channel).
if not OmegaConf.has_resolver("mmdiff.add"):
    OmegaConf.register_new_resolver("mmdiff.add", lambda *values: sum(values))
# `${mmdiff.div:a,b}`: a quotient, an int when it is a whole number (e.g. mel frames per video frame).
if not OmegaConf.has_resolver("mmdiff.div"):
    OmegaConf.register_new_resolver("mmdiff.div", lambda a, b: int(a / b) if (a / b) == int(a / b) else a / b)


def config_dirs() -> tuple[Path, Path]:
    """``(conf_dir, recipes_dir)`` for an installed wheel or a source checkout."""
    for base in (PACKAGE_DIR / "_configs", PACKAGE_DIR.parent):
        if (base / "conf" / "config.yaml").is_file() and (base / "recipes").is_dir():
            return base / "conf", base / "recipes"
    raise FileNotFoundError(f"mmdiff's conf/ and recipes/ folders are missing beside {PACKAGE_DIR}; reinstall mmdiff")


def recipe_dirs(extra: list[str | Path] = ()) -> list[Path]:
    """Built-in recipes first, then ``MMDIFF_RECIPE_PATH`` entries, then ``extra``; later ones win on a name clash."""
    env = [p for p in os.environ.get("MMDIFF_RECIPE_PATH", "").split(os.pathsep) if p]
    dirs = [config_dirs()[1], *map(Path, env), *map(Path, extra)]
    for d in dirs[1:]:
        if not d.is_dir():
            raise FileNotFoundError(f"recipe folder {d} does not exist")
    return dirs


def find_recipes(dirs: list[Path]) -> dict[str, Path]:
    """``{name: file}`` of every ``*.yaml`` recipe in ``dirs``."""
    found: dict[str, Path] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            found[path.stem] = path
    return found


def recipe_summary(path: Path) -> str:
    """The first comment line after the ``@package`` header: the recipe's one-line description."""
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and "@package" not in text:
            return text.lstrip("# ").strip()
    return ""


def register_recipes(dirs: list[Path]) -> dict[str, Path]:
    """Store each recipe in Hydra's ConfigStore as ``recipe/<name>`` at the global package."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    recipes = find_recipes(dirs)
    for name, path in recipes.items():
        try:
            node = OmegaConf.load(path)
        except Exception as err:  # a YAML syntax error: name the file
            raise ValueError(f"recipe {path} is not valid YAML: {err}") from err
        store.store(group="recipe", name=name, node=node, package="_global_")
    return recipes


# ---- what a run keeps beside its checkpoints -----------------------------------------------------------------------
#: The config key listing files that a run keeps in its own folder: ``{"adapter.autoencoder": "autoencoder"}``.
RUN_ASSETS = "run_assets"


def record_run_setup(config_yaml: str, node: str, setup: dict, run_dir: str | Path) -> str:
    """``config_yaml`` with what a component measured or stored when the run started (a latent adapter's
    statistics and its codec copy): ``setup["settings"]`` sets keys of ``node``, ``setup["assets"]`` sets keys of
    ``node`` to files inside ``run_dir`` and lists them under :data:`RUN_ASSETS` by their path relative to the run, so
    that :func:`locate_run_assets` finds them again when the run folder has moved."""
    if not config_yaml:
        return config_yaml
    cfg = OmegaConf.create(config_yaml)
    assets = dict(cfg.get(RUN_ASSETS) or {})
    for key, value in (setup.get("settings") or {}).items():
        OmegaConf.update(cfg, f"{node}.{key}", value, force_add=True)
    for key, relative in (setup.get("assets") or {}).items():
        OmegaConf.update(cfg, f"{node}.{key}", str(Path(run_dir).absolute() / relative), force_add=True)
        assets[f"{node}.{key}"] = str(relative)
    if assets:
        OmegaConf.update(cfg, RUN_ASSETS, assets, force_add=True)
    return OmegaConf.to_yaml(cfg)


def locate_run_assets(cfg, run_dir: str | Path | None) -> None:
    """Point each key listed under :data:`RUN_ASSETS` of a loaded run config at the file inside ``run_dir`` (the
    folder the run is in now, which may not be where it was trained). A missing file is a one-line error."""
    if run_dir is None:
        return
    for key, relative in (cfg.get(RUN_ASSETS) or {}).items():
        path = Path(run_dir) / str(relative)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: the run keeps its {key.split('.')[-1]} there (copy the whole run folder)"
            )
        OmegaConf.update(cfg, key, str(path))
