"""Proportions with Wilson score confidence intervals.

Every accuracy this package reports is a count of successes out of a number of samples; the
Wilson interval is used because it stays inside [0, 1] and behaves at 0/n and n/n, where the
normal-approximation interval collapses to a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Two-sided 95%: the 0.975 quantile of the standard normal.
Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``trials``; (0, 1) when there are no trials."""
    if isinstance(successes, bool) or isinstance(trials, bool):
        raise ValueError("successes and trials must be integers, not booleans")
    successes, trials = int(successes), int(trials)
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} out of {trials}")
    if not (z > 0 and math.isfinite(z)):
        raise ValueError(f"z must be a positive finite number, got {z}")
    if trials == 0:
        return (0.0, 1.0)
    n = trials
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamp rounding error at the ends (0/n and n/n give exactly 0 and 1 in exact arithmetic).
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


@dataclass(frozen=True)
class Proportion:
    """``successes`` out of ``trials`` with its 95% Wilson interval."""

    successes: int
    trials: int

    @property
    def value(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.trials)

    def __add__(self, other: "Proportion") -> "Proportion":
        return Proportion(self.successes + other.successes, self.trials + other.trials)

    def format(self, digits: int = 2) -> str:
        """``0.91 [0.87, 0.94]`` (or ``n/a`` with no trials)."""
        if not self.trials:
            return "n/a"
        lo, hi = self.interval
        return f"{self.value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    @classmethod
    def from_json(cls, data: dict) -> "Proportion":
        """Inverse of :meth:`to_json` (the value and interval are recomputed from the counts)."""
        return cls(int(data["successes"]), int(data["trials"]))

    def to_json(self) -> dict:
        lo, hi = self.interval
        return {
            "successes": self.successes,
            "trials": self.trials,
            "value": self.value if self.trials else None,
            "ci95": [lo, hi],
        }
