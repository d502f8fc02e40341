"""Samplers for compiled energy graphs.

    >>> from conceptlang.compiler import compile
    >>> from conceptlang.sampling import sample
    >>> from conceptlang.models.analytic import GaussianRegistry
    >>> result = sample(compile("red & circle", GaussianRegistry()), 8, seed=0, device="cpu")
    >>> tuple(result.images.shape)
    (8, 2, 1, 1)
"""

from conceptlang.sampling.api import SampleResult, resolve_device, resolve_settings, sample
from conceptlang.sampling.samplers import (
    SAMPLERS,
    SamplerSpec,
    get_sampler,
    get_sigmas_geometric,
    get_sigmas_karras,
    sample_annealed,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_heun,
    sample_langevin,
    sample_mala,
)

__all__ = [
    "sample",
    "SampleResult",
    "SAMPLERS",
    "SamplerSpec",
    "get_sampler",
    "get_sigmas_geometric",
    "get_sigmas_karras",
    "resolve_device",
    "resolve_settings",
    "sample_langevin",
    "sample_annealed",
    "sample_mala",
    "sample_heun",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
]
