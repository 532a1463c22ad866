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
