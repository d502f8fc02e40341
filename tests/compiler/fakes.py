"""A registry with two domains, to test cross-domain resolution and ambiguity."""

from __future__ import annotations

from conceptlang.data.domain import Domain, Family
from conceptlang.interface import ConceptRef
from conceptlang.models.analytic import GaussianConceptModel, GaussianRegistry

# "mirror": the gauss colours again, plus two families that share the value "warm".
MIRROR = Domain(
    name="mirror",
    image_size=1,
    channels=2,
    families=(
        Family("color", "discrete", values=("red", "green", "blue")),
        Family("tone", "discrete", values=("warm", "cold")),
        Family("hue", "discrete", values=("warm", "dark")),
    ),
)
_ALIASES = {("tone", "warm"): ("color", "red"), ("tone", "cold"): ("color", "blue"),
            ("hue", "warm"): ("color", "green"), ("hue", "dark"): ("color", "blue")}


class TwoDomainRegistry(GaussianRegistry):
    def __init__(self):
        super().__init__()
        self.mirror_model = GaussianConceptModel("mirror-joint", "explicit", None)
        self.mirror_model.domain = "mirror"

    def candidates(self, name, family=None):
        out = super().candidates(name, family)
        for fam in MIRROR.families:
            if (family is None or fam.name == family) and name in fam.values:
                out.append(ConceptRef("mirror", fam.name, value=name))
        return out

    def known_names(self):
        names = super().known_names()
        for fam in MIRROR.families:
            for v in fam.values:
                names += [v, f"{fam.name}.{v}"]
        return sorted(set(names))

    def model_for(self, ref):
        if ref.domain == "mirror":
            fam, val = _ALIASES.get((ref.family, ref.value), (ref.family, ref.value))
            return self.mirror_model, {fam: val}
        return super().model_for(ref)

    def prior(self, domain):
        if domain == "mirror":
            return self.mirror_model, {}
        return super().prior(domain)

    def domain(self, name):
        if name == "mirror":
            return MIRROR
        return super().domain(name)


class TableSharesRegistry(GaussianRegistry):
    """The analytic gauss registry with the data's label distribution given as a table over
    (color, shape, size): ``value_shares`` marginalises it exactly (the shipped registry counts
    generator draws instead), so branch weights can be checked against hand-computed values."""

    TABLE = {
        ("red", "circle", "small"): 0.04, ("red", "circle", "large"): 0.06,
        ("red", "square", "small"): 0.10, ("red", "square", "large"): 0.10,
        ("green", "circle", "small"): 0.15, ("green", "circle", "large"): 0.00,
        ("green", "square", "small"): 0.05, ("green", "square", "large"): 0.20,
        ("blue", "circle", "small"): 0.05, ("blue", "circle", "large"): 0.00,
        ("blue", "square", "small"): 0.125, ("blue", "square", "large"): 0.125,
    }
    FAMILIES = ("color", "shape", "size")

    def __init__(self, kind="noise_conditional", shares=None, **kw):
        super().__init__(kind, **kw)
        self.fixed = shares  # a fixed answer (malformed ones included), else the table's
        self.asked = []

    def value_shares(self, domain, families, given):
        self.asked.append((tuple(families), tuple(r.qualified for r in given)))
        if self.fixed is not None:
            return self.fixed
        if any(f not in self.FAMILIES for f in families):
            return None
        out = {}
        for row, p in self.TABLE.items():
            lab = dict(zip(self.FAMILIES, row))
            if all(lab.get(r.family) == r.value for r in given if r.family in self.FAMILIES):
                key = tuple(lab[f] for f in families)
                out[key] = out.get(key, 0.0) + p
        total = sum(out.values())
        return {k: v / total for k, v in out.items()} if total else None
