"""The judges' image augmentation: noise, blur and brightness, so that a judge trained on clean
generator output also reads imperfect samples. Training draws it with the probabilities of the
judge's configuration; measurement applies one kind to every image (:mod:`conceptlang.judge.measure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from conceptlang.judge.training import TrainConfig


@dataclass(frozen=True)
class Augmentation:
    """How often each augmentation is drawn (0-255 pixel scale)."""

    noise_p: float = 0.5  # probability of additive Gaussian noise, σ ~ U(0, noise_max)
    noise_max: float = 20.0
    blur_p: float = 0.3  # probability of a Gaussian blur, σ ~ U(0.3, 1.0) px
    gain_p: float = 0.3  # probability of a brightness gain ~ U(0.75, 1.1) and a colour shift ±12


def _gauss_kernels(sigmas: torch.Tensor) -> torch.Tensor:
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r[None] ** 2) / (2 * sigmas[:, None] ** 2))
    return k / k.sum(1, keepdim=True)  # (B, 5)


def augment(x: torch.Tensor, cfg: Augmentation | TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Noise / blur / gain augmentation of float images (B, 3, H, W) in 0..255, as ``cfg`` (an
    :class:`Augmentation`, or a judge's training configuration, which carries the same fields) sets it."""
    b = x.shape[0]
    # Blur: separable 5-tap Gaussian with a per-image σ, as a grouped convolution.
    blur = torch.rand(b, generator=gen) < cfg.blur_p
    if blur.any():
        xb = x[blur]
        k = _gauss_kernels(0.3 + 0.7 * torch.rand(int(blur.sum()), generator=gen))
        n = xb.shape[0]
        kh = k.repeat_interleave(3, 0)[:, None, None, :]  # (n*3, 1, 1, 5)
        y = xb.reshape(1, n * 3, *xb.shape[2:])
        y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kh, groups=n * 3)
        y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kh.transpose(2, 3), groups=n * 3)
        x = x.clone()
        x[blur] = y.reshape(xb.shape)
    gain = torch.rand(b, generator=gen) < cfg.gain_p
    if gain.any():
        g = 0.75 + 0.35 * torch.rand(int(gain.sum()), 1, 1, 1, generator=gen)
        shift = (torch.rand(int(gain.sum()), 3, 1, 1, generator=gen) - 0.5) * 24
        x = x.clone()
        x[gain] = x[gain] * g + shift * (x[gain] > 30).float()
    noisy = torch.rand(b, generator=gen) < cfg.noise_p
    if noisy.any():
        s = cfg.noise_max * torch.rand(int(noisy.sum()), 1, 1, 1, generator=gen)
        x = x.clone()
        x[noisy] = x[noisy] + s * torch.randn(x[noisy].shape, generator=gen)
    return x.clamp(0, 255)
