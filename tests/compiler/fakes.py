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
