"""Generation, written once for the pipeline, the CLI and the trainer's demo samples.

:class:`GenerateOptions` is the one definition of what a generation call takes: ``pipe.generate(...)``,
``mmdiff sample key=value``, the trainer's demo samples and the ``generate:`` config node all read their keys from it,
so an option cannot be reachable in one place and missing in another. Conditions (``label=``, later ``prompt=``)
are not options: they belong to the run's conditioner, which names the keys it takes.

:func:`generate` runs one call: validate the options before any work, build the conditions, sample with the core,
and decode each sample under its own seed, so any sample can be regenerated alone from its seed.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from .conditioners import Conditioner, guidance_null
from .core import SPACINGS, classifier_free_guidance, resolve_sampler, sample, sigmas_for
from .modality import ModalityAdapter

#: Options that only some samplers take; passed to the sampler when set, refused when it does not take them.
SAMPLER_OPTIONS = ("eta", "s_churn", "s_noise", "order", "variant")


@dataclass(frozen=True)
class GenerateOptions:
    """Every option of a generation call (defaults: the run's ``generate:`` config, then these).

    Args:
        num_samples: how many items (``n`` in ``pipe.generate(n)`` and ``mmdiff sample n=``).
        seed: base seed (sample ``i`` uses ``seed + i``) or one seed per sample.
        sampler: a name from :data:`mmdiff.core.SAMPLERS` or ``"diffusers:<SchedulerClass>"``; default ``unipc``
            (measured best at 10-20 steps, docs/core.md).
        steps: sampler steps.
        spacing: how the steps are spread over the noise levels: ``exponential`` (uniform in log-sigma, the
            default), ``karras``, or a time spacing of the schedule (``trailing``, ...).
        sigma_min: smallest nonzero noise level (default: ``0.01 sigma_data``, inside the schedule's range).
        sigma_max: starting noise level (default: ``20 sigma_data``, inside the schedule's range).
        sigma_data: the data's standard deviation in the model's space, which sets the default noise range
            (:func:`mmdiff.core.spacing.sigma_range`); 1 fits the built-in adapters (log-mels and pixels scaled to
            about unit size); ``None``: the schedule's whole trained range.
        guidance_scale: classifier-free guidance scale (1: off).
        guidance_rescale: guidance rescale in [0, 1] (Lin et al. 2023).
        guidance_interval: ``(sigma_lo, sigma_hi)``: guide only there (Kynkäänniemi et al. 2024).
        known_guidance_scale: guidance on the known parts of a call (a given track for video-to-audio and
            audio-to-video, kept frames, image-to-video): ``D = D_unknown + s (D_known - D_unknown)``, where
            ``D_unknown`` is the prediction without the known-part input (1: off). Composes with ``guidance_scale``.
        eta: noise of the stochastic samplers (``dpmpp_2m_sde``, ``euler_ancestral``, ``ddim`` ...).
        s_churn: EDM's stochastic churn (``euler``, ``heun``).
        s_noise: scale of the injected noise (the stochastic samplers).
        order: the predictor's order of ``unipc`` (1-3; default 2, with its corrector one more).
        variant: ``unipc``'s ``bh2`` (default) or ``bh1``.
        length: media length in the adapter's unit (seconds of audio, video frames); default: the adapter's.
        init: media to edit (a file, a decoded item, or a batch in the model's space).
        strength: SDEdit strength in (0, 1] with ``init`` (1 regenerates fully).
        keep: ``(start, end)``: keep that range of ``init`` and generate the rest (inpainting, continuation).
        tuned: use the run's tuned step schedule for ``(sampler, steps)`` when it has one (``mmdiff tune-steps``) and
            the call sets no ``spacing``, ``sigma_min``, ``sigma_max`` or ``sigmas`` of its own; ``False``: never.
        sigmas: an explicit list of ``steps + 1`` decreasing noise levels ending at 0 (overrides ``spacing``,
            ``sigma_min``, ``sigma_max`` and a tuned schedule).
        first: for a call that generates every part (no given part, ``init`` or ``keep``): generate all, then
            generate the rest again given this part of the first pass (one of the adapter's given parts: ``video``
            for a joint audio-video model makes the sound for the finished picture, as video-to-audio does). Twice
            the network calls; ``None``: one joint pass.
    """

    num_samples: int = 4
    seed: int | Sequence[int] = 0
    sampler: str = "unipc"
    steps: int = 25
    spacing: str = "exponential"
    sigma_min: float | None = None
    sigma_max: float | None = None
    sigma_data: float | None = 1.0
    guidance_scale: float = 1.0
    guidance_rescale: float = 0.0
    guidance_interval: Sequence[float] | None = None
    known_guidance_scale: float = 1.0
    eta: float | None = None
    s_churn: float | None = None
    s_noise: float | None = None
    order: int | None = None
    variant: str | None = None
    length: float | None = None
    init: Any = None
    strength: float = 1.0
    keep: Sequence[float] | None = None
    tuned: bool = True
    sigmas: Sequence[float] | None = None
    first: str | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "generate") -> GenerateOptions:
        """Options from a mapping (a config node, CLI arguments); an unknown key is a one-line error naming it."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {unknown}; valid options: {', '.join(cls.keys())}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> GenerateOptions:
        return dataclasses.replace(self, **changes)

    def seeds(self) -> list[int]:
        """One seed per sample."""
        if isinstance(self.seed, int):
            return [self.seed + i for i in range(self.num_samples)]
        return [int(s) for s in self.seed]

    def sampler_options(self) -> dict[str, float]:
        """The sampler-specific options that are set, checked against the sampler's own parameters."""
        chosen = {k: getattr(self, k) for k in SAMPLER_OPTIONS if getattr(self, k) is not None}
        if chosen:
            run = resolve_sampler(self.sampler)
            takes = set(inspect.signature(run).parameters)
            refused = sorted(set(chosen) - takes)
            if refused:
                which = ", ".join(k for k in SAMPLER_OPTIONS if k in takes) or "none of them"
                raise ValueError(f"{refused[0]}: sampler {self.sampler!r} does not take it (it takes: {which})")
        return chosen

    def check(self) -> None:
        """Validate every value before any work: one-line errors that name the option and what it expects."""
        _whole(self.num_samples, "n (num_samples)")
        _whole(self.steps, "steps")
        if not isinstance(self.seed, int):
            if isinstance(self.seed, (str, bytes)) or len(self.seed) != self.num_samples:
                raise ValueError(
                    f"seed: expected one integer or {self.num_samples} (one per sample), got {self.seed!r}"
                )
        resolve_sampler(self.sampler)
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing: expected one of {', '.join(SPACINGS)}, got {self.spacing!r}")
        if not (_number(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale: expected a number >= 0 (1: no guidance), got {self.guidance_scale!r}")
        if not (_number(self.known_guidance_scale) and self.known_guidance_scale >= 0):
            raise ValueError(
                f"known_guidance_scale: expected a number >= 0 (1: no guidance), got {self.known_guidance_scale!r}"
            )
        if not (_number(self.guidance_rescale) and 0 <= self.guidance_rescale <= 1):
            raise ValueError(f"guidance_rescale: expected a number in [0, 1], got {self.guidance_rescale!r}")
        if self.sigma_data is not None and not (_number(self.sigma_data) and self.sigma_data > 0):
            raise ValueError(
                f"sigma_data: expected the data's standard deviation (> 0) or null, got {self.sigma_data!r}"
            )
        for key in ("sigma_min", "sigma_max", "eta", "s_churn", "s_noise"):
            value = getattr(self, key)
            if value is not None and not (_number(value) and value >= 0):
                raise ValueError(f"{key}: expected a number >= 0, got {value!r}")
        if self.order is not None and not (isinstance(self.order, int) and 1 <= self.order <= 3):
            raise ValueError(f"order: expected 1, 2 or 3, got {self.order!r}")
        if self.variant is not None and self.variant not in ("bh1", "bh2"):
            raise ValueError(f"variant: expected bh1 or bh2, got {self.variant!r}")
        if self.sigma_min is not None and self.sigma_max is not None and self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        _pair(self.guidance_interval, "guidance_interval", "(sigma_lo, sigma_hi)")
        _pair(self.keep, "keep", "(start, end)")
        if self.length is not None and not (_number(self.length) and 0 < self.length < math.inf):
            raise ValueError(f"length: expected a positive number (seconds, frames), got {self.length!r}")
        if not (_number(self.strength) and 0 < self.strength <= 1):
            raise ValueError(f"strength: expected a number in (0, 1], got {self.strength!r}")
        if not isinstance(self.tuned, bool):
            raise ValueError(f"tuned: expected true or false, got {self.tuned!r}")
        if self.sigmas is not None:
            _sigma_list(self.sigmas, self.steps)
        if self.first is not None and not (isinstance(self.first, str) and self.first):
            raise ValueError(
                f"first: expected the name of a part to generate first (video, audio) or null, got {self.first!r}"
            )
        if (self.strength != 1 or self.keep is not None) and self.init is None:
            raise ValueError("init: strength < 1 and keep=(start, end) edit an input: give init=FILE")
        self.sampler_options()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a whole number >= 1, got {value!r}")


def _sigma_list(value: Any, steps: int) -> None:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not all(_number(v) for v in value)
        or len(value) != steps + 1
        or value[-1] != 0
        or any(a <= b for a, b in pairwise(value))
    ):
        raise ValueError(
            f"sigmas: expected steps + 1 = {steps + 1} decreasing numbers ending at 0 (or set steps to match), "
            f"got {value!r}"
        )


def _pair(value: Any, name: str, form: str) -> None:
    if value is None:
        return
    if isinstance(value, (str, bytes)) or len(value) != 2 or not all(_number(v) for v in value):
        raise ValueError(f"{name}: expected two numbers {form}, got {value!r}")
    if not 0 <= value[0] < value[1]:
        raise ValueError(f"{name}: expected 0 <= {form.strip('()').replace(', ', ' < ')}, got {tuple(value)}")


def split_options(
    options: Mapping[str, Any], conditioner: Conditioner, extra: Sequence[str] = (), given: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options into ``(generate options, requests)``: requests are the conditioner's keys and the
    adapter's ``given`` parts (``video=``, ``audio=``). An unknown key is a one-line error that lists every valid
    key (``extra``: keys the caller handles itself, listed too)."""
    opts, request = {}, {}
    for key, value in options.items():
        if key in GenerateOptions.keys():
            opts[key] = value
        elif key in conditioner.request_keys or key in given:
            request[key] = value
        else:
            valid = {*GenerateOptions.keys(), *conditioner.request_keys, *given, *extra}
            valid = sorted(valid - {"num_samples"} | {"n"})
            raise ValueError(f"unknown option {key!r}; valid options: {', '.join(valid)}")
    return opts, request


class Samples(list):
    """Generated media items (a list), with each sample's ``seeds`` and ``captions`` (condition and seed), and the
    explicit ``sigmas`` the sampler walked (a tuned or given list; ``None``: the spacing's own)."""

    def __init__(
        self,
        items: Sequence[Any],
        seeds: Sequence[int],
        captions: Sequence[str],
        sigmas: Sequence[float] | None = None,
    ):
        super().__init__(items)
        self.seeds, self.captions = list(seeds), list(captions)
        self.sigmas = None if sigmas is None else [float(s) for s in sigmas]


def generate(
    adapter: ModalityAdapter,
    conditioner: Conditioner,
    denoiser: Any,
    options: GenerateOptions,
    *,
    schedule: Any = None,
    device: Any = "cpu",
    progress: bool = False,
    request: Mapping[str, Any] | None = None,
) -> Samples:
    """Sample ``options.num_samples`` items and decode them to media.

    ``request`` holds condition requests for the conditioner (``label=3``) and parts of the samples the adapter
    takes by name (its ``given_keys``: ``video=`` for video-to-audio). Sample ``i`` is made from seed ``seeds[i]``
    alone (noise and decoding), in any batch.
    """
    options.check()
    device = torch.device(device)
    n, seeds = options.num_samples, options.seeds()
    request = dict(request or {})
    given = {key: request.pop(key) for key in list(request) if key in adapter.given_keys}
    if given and options.init is not None:
        raise ValueError(f"{', '.join(given)}= give parts of the samples and init= whole ones: use one of them")
    init, mask = _init_batch(adapter, options, n, device), None
    if given:
        init, mask = (t.to(device) for t in adapter.load_given(given, n, options.length))
    shape = (n, *(init.shape[1:] if init is not None else adapter.sample_shape(options.length)))
    _check_memory(shape, device)
    cond = conditioner.request(n, device, **request)
    if options.keep is not None:
        mask = adapter.range_mask(shape, *options.keep).to(device)
    first = options.first if mask is None and init is None else None  # the order of a fully generated call
    if first is not None and first not in adapter.given_keys:
        parts = ", ".join(adapter.given_keys) or "none"
        raise ValueError(f"first: {type(adapter).__name__} has no part {first!r} (its parts: {parts})")

    def run(init: Tensor | None, mask: Tensor | None) -> Tensor:
        """One sampling pass: ``mask`` 1 on the parts of ``init`` that are kept and given to the network."""
        known, guided = {}, denoiser
        if mask is not None:
            known = adapter.known_conditions(init, mask)
            guided = known_guidance(denoiser, adapter, init, mask, options.known_guidance_scale)
        return sample(
            guided,
            shape,
            sampler=options.sampler,
            steps=options.steps,
            seed=seeds,
            sigmas=options.sigmas,
            schedule=schedule,
            spacing=options.spacing,
            sigma_min=options.sigma_min,
            sigma_max=options.sigma_max,
            sigma_data=options.sigma_data,
            cond={**cond, **known},
            **guidance_arguments(conditioner, options, device, request),
            init=init,
            strength=options.strength,
            mask=mask,
            noise_prior=adapter.noise_prior,
            device=device,
            progress=progress,
            **options.sampler_options(),
        )

    x = run(init, mask)
    if first is not None:  # the rest again, given the first pass's part
        x = run(x, adapter.given_mask(shape, [first]).to(x))
    described = conditioner.describe(cond) or [""] * n
    captions = [f"{what}\nseed {seed}" if what else f"seed {seed}" for what, seed in zip(described, seeds)]
    return Samples(decode_seeded(adapter, x, seeds), seeds, captions, options.sigmas)


def default_sigmas(options: GenerateOptions, schedule: Any = None) -> Tensor:
    """The sigma list that :func:`generate` walks for ``options`` without a tuned or explicit list: ``options.steps``
    steps of ``options.spacing`` over the schedule's range (or ``sigma_min`` / ``sigma_max``). float64, ending at 0.
    ``mmdiff tune-steps`` starts its fit from it."""
    if options.sigmas is not None:
        return torch.tensor([float(s) for s in options.sigmas], dtype=torch.float64)
    return sigmas_for(
        schedule,
        options.steps,
        options.spacing,
        sigma_min=options.sigma_min,
        sigma_max=options.sigma_max,
        sigma_data=options.sigma_data,
    )


def known_guidance(denoiser: Any, adapter: ModalityAdapter, known: Tensor, mask: Tensor, scale: float) -> Any:
    """``denoiser`` guided towards its known-part input (video given for video-to-audio, kept frames):
    classifier-free guidance whose null condition is the known-part input of nothing known, what the network saw
    for joint generation in training (:meth:`~mmdiff.modality.ModalityAdapter.known_mask` draws both). ``scale`` 1:
    ``denoiser`` itself."""
    if scale == 1.0:
        return denoiser
    nothing = adapter.known_conditions(known[:1], torch.zeros_like(mask[:1]).expand_as(known[:1]))
    return classifier_free_guidance(denoiser, scale, {key: value[0] for key, value in nothing.items()})


def guidance_arguments(
    conditioner: Conditioner, options: GenerateOptions, device: Any, request: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The guidance keywords of :func:`mmdiff.core.sample` for a call: guidance is on when ``guidance_scale`` is not 1
    and the conditioner has a null condition for the request; a negative prompt without guidance is an error."""
    request = dict(request or {})
    null = guidance_null(conditioner, options.num_samples, torch.device(device), request)
    guided = options.guidance_scale != 1.0 and bool(null)
    if request.get("negative_prompt") is not None and not guided:
        raise ValueError("negative_prompt: works through guidance; set guidance_scale above 1 (e.g. 3)")
    return {
        "guidance_scale": options.guidance_scale if guided else 1.0,
        "null_cond": null if guided else None,
        "guidance_rescale": options.guidance_rescale,
        "guidance_interval": tuple(options.guidance_interval) if options.guidance_interval else None,
    }


def decode_seeded(adapter: ModalityAdapter, x: Tensor, seeds: Sequence[int]) -> list[Any]:
    """Decode each sample of ``x (B, ...)`` alone with torch's RNG seeded by its seed, so a decoder that draws random
    numbers (Griffin-Lim's initial phase) gives the same media for a seed in any batch; the caller's RNG state is
    restored afterwards. Decoding runs in float32 with autocast off: a caller's mixed precision (the trainer's demo
    samples under bf16) is for the network, and decoders such as Griffin-Lim take no half-precision input."""
    devices = [x.device] if x.device.type == "cuda" else []
    items: list[Any] = []
    for row, seed in zip(x, seeds):
        with torch.random.fork_rng(devices=devices), torch.autocast(x.device.type, enabled=False):
            torch.manual_seed(seed)
            items.extend(adapter.decode(row[None].float()))
    return items


def _init_batch(adapter: ModalityAdapter, options: GenerateOptions, n: int, device: torch.device) -> Tensor | None:
    """``init`` as a batch ``(n, ...)`` in the model's space: a batch tensor as given, else one media item (a file
    or a decoded item) loaded by the adapter and repeated."""
    init = options.init
    if init is None:
        return None
    per_sample = adapter.sample_shape(options.length)
    if torch.is_tensor(init) and init.ndim == len(per_sample) + 1:
        if init.shape[0] != n:
            raise ValueError(f"init: a batch of {init.shape[0]} for n={n} samples")
        return init.to(device).float()
    item = adapter.load_init(init, options.length)  # (per-sample shape)
    return item[None].expand(n, *item.shape).to(device)


def _check_memory(shape: tuple[int, ...], device: torch.device) -> None:
    """Refuse a request whose sampler state alone would not fit (a mistyped ``length``), before any work."""
    need = 8 * 4 * math.prod(shape)  # float32 x, noise, denoised, history and guidance copies: a floor, not an estimate
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory
    else:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ValueError(
            f"n/length: {shape[0]} sample(s) of shape {tuple(shape[1:])} need at least {need / 2**30:.1f} GiB for the "
            f"sampler's tensors alone, more than the {have / 2**30:.1f} GiB of this {device.type} device; "
            "ask for fewer samples or a shorter length"
        )
