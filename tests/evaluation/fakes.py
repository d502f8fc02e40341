"""Small exact stand-ins for models, registries, judges and the sampler, for fast evaluation tests.

``TemplateRegistry``: a toy domain of 16×16 images, one coloured Gaussian bump on black. Each
model's energy is a quadratic or a correlation against a rendered template, so the minimum of
every energy is known exactly: the colour of the bump and its centre.
"""

from __future__ import annotations

import numpy as np
import torch

from conceptlang.data.domain import Domain, Family
from conceptlang.interface import ConceptRef

SIZE = 16
COLORS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}
WIDTH = 0.09

TOY = Domain(
    name="toy",
    image_size=SIZE,
    channels=3,
    families=(
        Family("color", "discrete", values=tuple(COLORS)),
        Family("glow", "discrete", values=("glow",)),
        Family("position", "continuous", params=("x", "y"), ranges=((0.0, 1.0), (0.0, 1.0))),
    ),
)


def bump(x: float, y: float, size: int = SIZE) -> np.ndarray:
    """(size, size) Gaussian bump in [0, 1] centred at (x, y) (fractions, from the top-left)."""
    c = (np.arange(size) + 0.5) / size
    return np.exp(-((c[None, :] - x) ** 2 + (c[:, None] - y) ** 2) / (2 * WIDTH**2))


def render(color: str, x: float, y: float) -> np.ndarray:
    """uint8 (SIZE, SIZE, 3): a bump of ``color`` at (x, y) on black."""
    b = bump(x, y)[..., None]  # (S, S, 1)
    rgb = (np.array(COLORS[color]) + 1) / 2  # 0/1 per channel
    return np.round(255 * b * rgb).astype(np.uint8)


class TemplateModel:
    kind = "explicit"
    noise_conditional = False
    image_shape = (3, SIZE, SIZE)
    domain = "toy"

    def __init__(self, family: str):
        self.name = f"toy-{family}"
        self.family = family
        self.calls = 0

    def encode(self, conditions):
        rows = []
        for c in conditions:
            if not c:
                rows.append([0.0, 0.0, 0.0])
            elif self.family == "color":
                rows.append([1.0 + list(COLORS).index(c["color"]), 0.0, 0.0])
            elif self.family == "glow":
                rows.append([1.0, 0.0, 0.0])
            else:
                px, py = c["position"]
                rows.append([1.0, float(px), float(py)])
        return torch.tensor(rows, dtype=torch.float32)

    def energy(self, x, cond, sigma):
        """(N, 3, S, S), (N, 3) → (N,)"""
        self.calls += 1
        n = x.shape[0]
        out = torch.zeros(n, dtype=torch.float64)
        for i in range(n):
            xi = x[i].double()
            flag = float(cond[i, 0])
            if flag == 0:  # the prior: a constant, so "glow" is decided against it
                out[i] = 0.0
            elif self.family == "color":
                rgb = torch.tensor(COLORS[list(COLORS)[int(round(flag)) - 1]], dtype=torch.float64)
                w = (xi + 1).sum(0)  # (S, S) brightness weights
                out[i] = ((xi - rgb[:, None, None]) ** 2 * w).sum() / w.sum().clamp_min(1e-9)
            elif self.family == "glow":
                out[i] = -10.0 * xi.mean()
            else:
                b = torch.from_numpy(bump(float(cond[i, 1]), float(cond[i, 2])))
                y = (xi + 1).mean(0)  # (S, S)
                # Negative normalised correlation: minimal exactly at the bump's centre.
                out[i] = -(y * b).sum() / b.norm()
        return out.float()

    def score(self, x, cond, sigma):  # pragma: no cover - not used by inference
        raise NotImplementedError


class TemplateRegistry:
    def __init__(self):
        self.models = {f: TemplateModel(f) for f in ("color", "glow", "position")}
        self.prior_model = TemplateModel("prior")

    def candidates(self, name, family=None):
        return []

    def known_names(self):
        return list(COLORS) + ["glow", "position"]

    def model_for(self, ref: ConceptRef):
        m = self.models[ref.family]
        if ref.params is not None:
            return m, {ref.family: tuple(ref.params)}
        return m, {ref.family: ref.value}

    def prior(self, domain):
        return self.prior_model, {}

    def domain(self, name):
        if name != "toy":
            from conceptlang.errors import ModelError

            raise ModelError(f"no models for domain {name!r}")
        return TOY

    def sampler_settings(self, models):
        return {}


class PixelJudge:
    """Reads the verdict off pixel (0, 0): red channel > 127 → "A", green → "B", blue > 127 → invalid.

    Pixel (0, 1) red channel counts objects (value // 50), placed at x = 0.25 and 0.75, y = 0.5.
    """

    def valid(self, images, n_objects=None):
        self.last_n_objects = n_objects
        return images[:, 0, 0, 2] <= 127

    def reasons(self, images, n_objects=None):
        return [
            ["object 0 colour (1, 2, 3) is far from the palette", "3 objects, expected 1"] if im[0, 0, 2] > 127 else []
            for im in images
        ]

    def labels(self, images):
        out = []
        for im in images:
            a, b = bool(im[0, 0, 0] > 127), bool(im[0, 0, 1] > 127)
            k = int(im[0, 1, 0]) // 50
            objs = [{"x": 0.25 + 0.5 * j, "y": 0.5} for j in range(k)]
            out.append({"A": a, "B": b, "C": False, "objects": objs})
        return out


def pixel_images(flags) -> np.ndarray:
    """uint8 (N, 4, 4, 3) images encoding (A, B, invalid) per sample for :class:`PixelJudge`."""
    imgs = np.zeros((len(flags), 4, 4, 3), np.uint8)
    for i, (a, b, inv) in enumerate(flags):
        imgs[i, 0, 0] = (255 * a, 255 * b, 255 * inv)
    return imgs


def truth_table_plan(text: str, n: int) -> list[tuple[int, int, int]]:
    """Samples that cycle through the satisfying (A, B) assignments of ``text`` (all valid)."""
    from conceptlang.syntax import evaluate, parse_expr

    expr = parse_expr(text)
    sat = [(a, b, 0) for a in (0, 1) for b in (0, 1) if evaluate(expr, {"A": bool(a), "B": bool(b), "C": False})]
    return [sat[i % len(sat)] for i in range(n)]


def install_fake_pipeline(monkeypatch, plan=truth_table_plan, objects: int = 0):
    """Replace compile and sample by fakes whose samples encode ``plan(text, n)`` for PixelJudge.

    Returns the list of (expression text, n, seed) calls made to the fake sampler.
    """
    from types import SimpleNamespace

    import conceptlang.compiler as compiler_pkg
    import conceptlang.sampling as sampling_pkg
    from conceptlang.syntax import parse, unparse
    from conceptlang.syntax.passes import expand_definitions

    calls = []

    def fake_compile(expr, registry, **kw):
        if isinstance(expr, str):
            expr = expand_definitions(parse(expr))
        return SimpleNamespace(expr=expr, domain="toy")

    def fake_sample(graph, n, seed=0, device="auto", **kw):
        text = unparse(graph.expr)
        calls.append((text, n, seed))
        u8 = pixel_images(plan(text, n))
        u8[:, 0, 1, 0] = 50 * objects
        x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, 4, 4)
        return SimpleNamespace(images=x, settings={"steps": 7}, seconds=0.0, branches=None)

    monkeypatch.setattr(compiler_pkg, "compile", fake_compile, raising=False)
    monkeypatch.setattr(sampling_pkg, "sample", fake_sample, raising=False)
    return calls
