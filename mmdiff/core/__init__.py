"""The modality-agnostic diffusion core: schedules, parameterisations, objectives, samplers, guidance.

Everything works on tensors of any rank ``(B, ...)`` through one denoiser contract in the variance-exploding frame::

    denoiser(x, sigma, **cond) -> x0_hat      # x = x0 + sigma * noise; sigma: (B,)

See ``docs/core.md``.
"""

from .diffusers_bridge import DiffusersSampler, schedule_from_diffusers
from .editing import masked_denoiser, truncate_for_strength
from .gmm import GaussianMixture
from .guidance import classifier_free_guidance, drop_conditions
from .model import DiffusionModel, NetworkDenoiser
from .noise import NoiseSource, SharedNoise, shared_noise
from .objectives import DiffusionLoss, LogitNormalTime, LogNormalSigma, UniformTime
from .packing import Packing
from .parameterization import (
    PARAMETERIZATIONS,
    convert_prediction,
    prediction_from,
    x0_from_prediction,
)
from .sample import resolve_sampler, sample
from .samplers import SAMPLERS, StepInfo
from .schedules import (
    EDMSchedule,
    FlowSchedule,
    Schedule,
    VPSchedule,
    rescale_zero_terminal_snr,
    vp_cosine,
    vp_linear,
    vp_scaled_linear,
    vp_sigmoid,
)
from .spacing import SPACINGS, jump_sigmas, karras_sigmas, sigmas_for
from .step_tuning import tune_sigmas

__all__ = [
    "PARAMETERIZATIONS",
    "SAMPLERS",
    "SPACINGS",
    "DiffusersSampler",
    "DiffusionLoss",
    "DiffusionModel",
    "EDMSchedule",
    "FlowSchedule",
    "GaussianMixture",
    "LogNormalSigma",
    "LogitNormalTime",
    "NetworkDenoiser",
    "NoiseSource",
    "Packing",
    "Schedule",
    "SharedNoise",
    "StepInfo",
    "UniformTime",
    "VPSchedule",
    "classifier_free_guidance",
    "convert_prediction",
    "drop_conditions",
    "jump_sigmas",
    "karras_sigmas",
    "masked_denoiser",
    "prediction_from",
    "rescale_zero_terminal_snr",
    "resolve_sampler",
    "sample",
    "schedule_from_diffusers",
    "shared_noise",
    "sigmas_for",
    "truncate_for_strength",
    "tune_sigmas",
    "vp_cosine",
    "vp_linear",
    "vp_scaled_linear",
    "vp_sigmoid",
    "x0_from_prediction",
]
