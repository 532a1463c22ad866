"""Building a run's components from its config, once for training and for loading.

Training (:func:`mmdiff.cli.run_training`) and :func:`mmdiff.load` both build the model definition, the conditioner
and the generation defaults here, so they cannot read a concept from two places: the prediction type is the top-level
``parameterization`` and nothing else, the class count is the data's.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .conditioners import Conditioner, with_encoder
from .core import DiffusionModel
from .data import dataset_classes
from .generation import GenerateOptions


def build_model(cfg: DictConfig) -> DiffusionModel:
    """The schedule and the parameterisation the network is trained under and sampled with."""
    return DiffusionModel(instantiate(cfg.schedule), cfg.parameterization)


def build_objective(cfg: DictConfig) -> Any:
    """The training loss of ``cfg.objective``: a diffusion loss gets the run's model definition
    (:func:`build_model`); an objective that takes no ``model`` (an autoencoder's reconstruction loss) is built as
    it is."""
    takes_model = "model" in inspect.signature(get_class(cfg.objective._target_)).parameters
    return instantiate(cfg.objective, **({"model": build_model(cfg)} if takes_model else {}))


def build_network(cfg: DictConfig, conditioner: Conditioner) -> nn.Module:
    """The network of ``cfg.net``, with the conditioner's encoder in front when it has one (text): the module the
    trainer trains and checkpoints and :func:`mmdiff.load` fills with weights."""
    return with_encoder(instantiate(cfg.net), conditioner)


def generate_defaults(cfg: DictConfig) -> GenerateOptions:
    """The run's ``generate:`` node as options (an unknown key is a one-line error naming it)."""
    return GenerateOptions.from_mapping(OmegaConf.to_container(cfg.generate, resolve=True), "generate")


def resolve_classes(cfg: DictConfig, dataset: Any) -> None:
    """Set ``num_classes`` (and ``class_names``) of ``cfg`` from the data when it says ``auto``; check it otherwise.

    An unlabelled folder trains unconditionally, a folder labelled by sub-folder gets its class count and names. An
    explicit ``num_classes=0`` trains unconditionally on labelled data; any other number must match the data.
    """
    found, names = dataset_classes(dataset)
    stated = cfg.num_classes
    if stated == "auto":
        if found is None:
            raise ValueError(
                f"num_classes: auto, but the data ({type(dataset).__name__}) does not say how many classes it has; "
                "set num_classes=N (0: unconditional)"
            )
        cfg.num_classes = found
    elif isinstance(stated, bool) or not isinstance(stated, int) or stated < 0:
        raise ValueError(f"num_classes: expected auto or a whole number >= 0, got {stated!r}")
    elif stated and found is not None and stated != found:
        raise ValueError(
            f"num_classes={stated} but the data ({type(dataset).__name__}) has {found} classes; leave num_classes "
            "out to take it from the data (auto), or set num_classes=0 to train unconditionally"
        )
    if cfg.num_classes and not cfg.get("class_names") and names:
        cfg.class_names = names
