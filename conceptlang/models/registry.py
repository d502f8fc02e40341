"""The model registry: ``models/manifest.json`` → concept names → (model, condition).

``load_registry(models_dir=None)`` reads and validates a manifest (``None`` → ``$CONCEPTLANG_MODELS``
or the shipped ``models/`` folder). Models are *handles*: their name, kind and image shape come
from the manifest, and the weights are read (sha256-verified, fp16 → fp32) only when a handle is
first evaluated, once per device, into a cache shared by every handle of that model.

The manifest's format, its validation and writing are :mod:`conceptlang.models.manifest`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from conceptlang.data.domain import Domain, Family
from conceptlang.errors import DataError, ModelError
from conceptlang.interface import ConceptModel, ConceptRef, Condition
from conceptlang.io import sha256_file
from conceptlang.models.manifest import (  # noqa: F401  (re-exported: the registry's public names)
    ARCHITECTURES,
    DEFAULT_ENERGY,
    FORMAT_VERSION,
    IMPLICIT_ARCHITECTURES,
    KINDS,
    LAYOUTS,
    MANIFEST,
    GuidanceSettings,
    energy_settings,
    load_manifest,
    read_manifest,
    sigma_range_of,
    validate_manifest,
)

# --------------------------------------------------------------------------------------------
# Loading weights
# --------------------------------------------------------------------------------------------


def build_net(entry: dict) -> torch.nn.Module:
    from conceptlang.models.networks import NETWORKS

    arch = entry["architecture"]
    try:
        net_class, config_class = NETWORKS[arch["class"]]
        return net_class(config_class.from_json(arch["config"]))
    except (TypeError, KeyError, ValueError) as err:
        raise ModelError(f"model {entry['name']!r}: bad architecture config ({err})") from None


def weights_path(entry: dict, models_dir: str | os.PathLike) -> Path:
    """The entry's weights file, refused (ModelError) when it resolves outside the models folder:
    a symbolic link (of the file or of a folder on its way) may not lead out of it."""
    path = Path(models_dir) / entry["file"]
    root = Path(models_dir).resolve()
    real = path.resolve()
    if not real.is_relative_to(root):
        raise ModelError(f"model {entry['name']!r}: weights file {path} resolves to {real}, outside the models "
                         f"folder {root} (a symbolic link may not lead out of it)")
    return path


def guide_entry(entry: dict) -> dict:
    """The entry's ``autoguide`` as an entry of its own (file, sha256, architecture), named for messages."""
    return {**entry["autoguide"], "name": f"{entry['name']} (autoguide)"}


def verify_weights(entry: dict, models_dir: str | os.PathLike) -> str:
    """``"ok"``, ``"missing"`` or ``"mismatch"``: whether the entry's weights file (and its autoguide's,
    if it has one) exists and has the manifest's sha256 (ModelError when a path leads outside the
    models folder)."""
    files = [entry] + ([guide_entry(entry)] if "autoguide" in entry else [])
    for spec in files:  # the model's weights, then its guide's
        path = weights_path(spec, models_dir)
        if not path.is_file():
            return "missing"
        if sha256_file(path) != spec["sha256"]:
            return "mismatch"
    return "ok"


def load_weights(entry: dict, models_dir: Path, device: torch.device) -> torch.nn.Module:
    """Build the network, verify the file's sha256, load the (fp16) weights as fp32 on ``device``.

    Every tensor must be finite: a NaN or infinity is refused here, naming the tensor, rather than
    surfacing later as a sampler's non-finite step."""
    from safetensors.torch import load_file

    path = weights_path(entry, models_dir)
    if not path.is_file():
        raise ModelError(f"model {entry['name']!r}: weights file {path} is missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ModelError(
            f"model {entry['name']!r}: checksum mismatch for {path} (manifest {entry['sha256'][:12]}…, file {digest[:12]}…); "
            "the file is corrupt or was replaced"
        )
    net = build_net(entry)
    try:
        state = load_file(str(path))
    except Exception as err:
        raise ModelError(f"model {entry['name']!r}: cannot read {path}: {err}") from None
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ModelError(f"model {entry['name']!r}: weights do not fit the architecture (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ModelError(f"model {entry['name']!r}: {k} has shape {tuple(v.shape)}, architecture expects {tuple(own[k].shape)}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise ModelError(f"model {entry['name']!r}: weights tensor {k} in {path} holds {bad} non-finite "
                             "value(s) (NaN or infinity); the file is not a usable model")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.to(device).eval().requires_grad_(False)


def _place_holds(pos: np.ndarray, centre, radius: float, away: bool = False) -> np.ndarray:
    """(N,) mask of the centres ``pos`` (N, P) within ``radius`` of ``centre`` (farther, ``away``).
    ``centre`` may hold several points one after another (K·P values): within ``radius`` of every
    one, or, ``away``, farther than ``radius`` from every one."""
    points = np.asarray(centre, dtype=np.float64).reshape(-1, pos.shape[1])  # (K, P)
    dist = np.linalg.norm(pos[:, None, :] - points[None, :, :], axis=2)  # (N, K)
    return (dist > radius).all(axis=1) if away else (dist <= radius).all(axis=1)


class RegisteredModel:
    """A :class:`ConceptModel` handle; the network for a device is loaded on first use and cached."""

    def __init__(self, entry: dict, registry: "ModelRegistry"):
        from conceptlang.models.networks import SlotSpec

        self.entry = entry
        self.name: str = entry["name"]
        self.domain: str = entry["domain"]
        self.kind: str = entry["kind"]
        cfg = entry["architecture"]["config"]
        self.noise_conditional: bool = self.kind == "implicit" or bool(cfg.get("noise_conditional", False))
        self.image_shape = (int(cfg.get("channels", 3)), int(cfg["image_size"]), int(cfg["image_size"]))
        self.slots = tuple(SlotSpec.from_json(s) for s in cfg.get("slots", ()))
        # (lo, hi) noise levels its conditions act at, hi = inf when unbounded; None: every level
        self.sigma_range: tuple[float, float] | None = sigma_range_of(entry)
        self._registry = registry
        self._device = torch.device("cpu")

    def impl(self, device: torch.device | str | None = None):
        """The loaded Implicit/ExplicitConceptModel on ``device`` (default: the handle's device)."""
        return self._registry.loaded(self.entry, torch.device(device) if device is not None else self._device)

    def to(self, device: torch.device | str) -> "RegisteredModel":
        self._device = torch.device(device)
        return self

    def encode(self, conditions: Sequence[Condition]) -> torch.Tensor:
        from conceptlang.models.conditions import encode_conditions

        return encode_conditions(self.slots, conditions)

    def energy(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return self.impl(x.device).energy(x, cond.to(x.device), sigma)

    def score(self, x: torch.Tensor, cond: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return self.impl(x.device).score(x, cond.to(x.device), sigma)

    @property
    def forward_rows(self) -> int:
        """Rows this model's networks have evaluated, over every device it was loaded on."""
        with self._registry._lock:
            loaded = [m for (name, _), m in self._registry._cache.items() if name == self.name]
        return sum(m.forward_rows for m in loaded)

    @property
    def passes_per_row(self) -> int:
        """Network passes a sampled row costs at most: 2 with an autoguide (the guide's beside the
        model's), twice that with mirror averaging (the mirror image's pass)."""
        return (2 if "autoguide" in self.entry else 1) * (2 if "mirror" in self.entry else 1)

    @property
    def fallback(self) -> "RegisteredModel | None":
        """The domain prior's handle when this model speaks only in a sigma range, else None."""
        return self._registry._priors.get(self.domain) if self.sigma_range is not None else None

    @property
    def has_energy_levels(self) -> bool:
        return self.kind == "implicit"

    def energy_levels(self, x: torch.Tensor, cond: torch.Tensor, draws: int | None = None) -> torch.Tensor:
        """Per-noise-level energies (N, S) of an implicit model (see ImplicitConceptModel.energy_levels)."""
        return self.impl(x.device).energy_levels(x, cond.to(x.device), draws)

    @property
    def inference_draws(self) -> int | None:
        """Noise draws per level when concept inference ranks a discrete family (manifest
        ``energy.inference_draws``; default the energy's own ``draws``); None for explicit models."""
        if self.kind != "implicit":
            return None
        return energy_settings(self.entry)["inference_draws"]

    def readout(self, family: str) -> dict | None:
        """The calibrated inference readout of ``family`` from the manifest (``inference.readout``), if any."""
        return (self.entry.get("inference") or {}).get("readout", {}).get(family)

    def __repr__(self) -> str:
        return f"RegisteredModel({self.name!r}, {self.kind}, domain={self.domain!r})"


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


class ModelRegistry:
    """Implements :class:`conceptlang.interface.ConceptRegistry` over a models folder."""

    def __init__(self, models_dir: str | os.PathLike):
        self.models_dir = Path(models_dir)
        manifest = load_manifest(self.models_dir)
        self.entries: list[dict] = manifest["models"]
        self.set_specs: list[dict] = list(manifest.get("model_sets", []))
        self._sets: list | None = None
        self.handles = {e["name"]: RegisteredModel(e, self) for e in self.entries}
        self._by_family: dict[tuple[str, str], RegisteredModel] = {}
        self._priors: dict[str, RegisteredModel] = {}
        self._finishers: dict[str, RegisteredModel] = {}
        for e in self.entries:
            if "finish_below" in e:
                self._finishers[e["domain"]] = self.handles[e["name"]]
            for fam in e["families"]:
                self._by_family[(e["domain"], fam)] = self.handles[e["name"]]
            if e.get("prior", e["layout"] == "joint"):
                self._priors[e["domain"]] = self.handles[e["name"]]
        self._domains = {d: self._build_domain(d) for d in self._priors}
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.RLock()  # re-entered when a model loads its fallback prior

    # -- loading --
    def loaded(self, entry: dict, device: torch.device):
        """The network of manifest ``entry`` on ``device``, loaded once and cached (thread-safe)."""
        from conceptlang.models.concept_model import ExplicitConceptModel, ImplicitConceptModel

        key = (entry["name"], str(device))
        with self._lock:
            model = self._cache.get(key)
            if model is None:
                net = load_weights(entry, self.models_dir, device)
                if entry["kind"] == "implicit":
                    en = energy_settings(entry)
                    g = GuidanceSettings.of_entry(entry)
                    model = ImplicitConceptModel(
                        net, entry["name"], entry["domain"],
                        energy_sigmas=(float(en["sigma_min"]), float(en["sigma_max"]), en["levels"]),
                        energy_draws=en["draws"], energy_seed=en["seed"],
                        guidance=g.guidance, guidance_interval=g.interval,
                        sampling_guidance=g.sampling_guidance, prior_below=g.prior_below, prior_keeps=g.prior_keeps,
                    )
                    if g.autoguide_weight is not None:  # a smaller network of the same conditions guides its sampling
                        guide = load_weights(guide_entry(entry), self.models_dir, device)
                        model.set_autoguide(guide, g.autoguide_weight, g.autoguide_interval)
                    if g.mirror_below is not None:  # the entry states its data is left-right symmetric
                        model.set_mirror(g.mirror_below, g.mirror_reflect, entry["mirror"].get("turns"))
                    rng = self.handles[entry["name"]].sigma_range
                    if rng is not None:  # outside its noise levels the model scores as the domain prior
                        model.set_sigma_range(*rng, fallback=self.loaded(self._priors[entry["domain"]].entry, device))
                else:
                    model = ExplicitConceptModel(net, entry["name"], entry["domain"])
                self._cache[key] = model
        return model

    def _build_domain(self, name: str) -> Domain:
        from conceptlang.data import DOMAIN_NAMES, get_domain

        first = self._priors[name].image_shape
        if name in DOMAIN_NAMES:
            # a built-in domain's families; the image size is the models' (a 64 px faces run is faces)
            dom = get_domain(name)
            return dom if (dom.channels, dom.image_size) == first[:2] else dataclasses.replace(dom, channels=first[0], image_size=first[1])
        fams = []
        for e in self.entries:
            if e["domain"] != name:
                continue
            for fam, spec in e["families"].items():
                if spec["kind"] == "discrete":
                    fams.append(Family(fam, "discrete", values=tuple(spec["values"]), exclusive=bool(spec.get("exclusive", True))))
                else:
                    fams.append(Family(fam, "continuous", params=tuple(spec["params"]), ranges=tuple(tuple(r) for r in spec["ranges"])))
        return Domain(name=name, image_size=first[1], channels=first[0], families=tuple(fams))

    # -- ConceptRegistry --
    def domains(self) -> list[str]:
        return sorted(self._domains)

    def domain(self, name: str) -> Domain:
        if name not in self._domains:
            close = difflib.get_close_matches(name, list(self._domains))
            hint = f"; did you mean {close[0]!r}?" if close else f" (domains: {', '.join(self.domains())})"
            raise ModelError(f"no models for domain {name!r} in {self.models_dir}{hint}")
        return self._domains[name]

    def _served(self, domain: str) -> list[Family]:
        return [f for f in self._domains[domain].families if (domain, f.name) in self._by_family]

    def candidates(self, name: str, family: str | None = None) -> list[ConceptRef]:
        out = []
        for d in self.domains():
            for fam in self._served(d):
                if family is not None and fam.name != family:
                    continue
                if fam.kind == "continuous":
                    if name == fam.name and family is None:
                        out.append(ConceptRef(d, fam.name))
                elif name in fam.values:
                    out.append(ConceptRef(d, fam.name, value=name))
        return out

    def known_names(self) -> list[str]:
        names: list[str] = []
        for d in self.domains():
            for fam in self._served(d):
                if fam.kind == "continuous":
                    names.append(fam.name)
                else:
                    for v in fam.values:
                        names += [v, f"{fam.name}.{v}"]
        return sorted(set(names))

    def model_for(self, ref: ConceptRef) -> tuple[ConceptModel, Condition]:
        model = self._by_family.get((ref.domain, ref.family))
        if model is None:
            raise ModelError(f"no model serves {ref.domain}/{ref.family} in {self.models_dir}")
        if ref.drawn:
            from conceptlang.interface import Drawn

            near = None if ref.params is None else tuple(float(p) for p in ref.params)
            return model, {ref.family: Drawn(near, away=ref.away and near is not None,
                                             avoid=tuple(float(p) for p in ref.avoid) if near is not None else ())}
        if ref.params is not None:
            return model, {ref.family: tuple(float(p) for p in ref.params)}
        if ref.absent:
            from conceptlang.models.conditions import ABSENT

            return model, {ref.family: ABSENT}
        if ref.value is None:
            raise ModelError(f"{ref.domain}/{ref.family} needs a value or parameters")
        return model, {ref.family: ref.value}

    def joint(self, refs: Sequence[ConceptRef]) -> tuple[ConceptModel, Condition] | None:
        """A joint model conditioned on every one of ``refs`` at once, or None.

        Only a ``layout: joint`` model serving all of them, with one value per family, qualifies: it
        was trained on random subsets of its families' labels (per-family condition dropout), so a
        multi-family condition is its own estimate of p(x | c₁, …, c_k), not an extrapolation.
        """
        if len(refs) < 2:
            return None
        pairs = [self.model_for(r) for r in refs]
        model = pairs[0][0]
        if any(m is not model for m, _ in pairs) or getattr(model, "entry", {}).get("layout") != "joint":
            return None
        cond: dict = {}
        for _, c in pairs:
            if set(c) & set(cond):
                return None
            cond.update(c)
        return model, cond

    def absent(self, ref: ConceptRef) -> ConceptRef | None:
        """The known-absent value of the yes/no attribute ``ref`` when its model has a ``<none>``
        token for it (it was trained on "known not to hold"), else None. Used by the compiler's
        ``negation="complement"``: ``~smiling`` becomes the condition smiling=<none>."""
        from conceptlang.models.conditions import NONE_TOKEN

        model = self._by_family.get((ref.domain, ref.family))
        if model is None or ref.value is None or ref.absent:
            return None
        if not any(s.family == ref.family and NONE_TOKEN in s.values for s in model.slots):
            return None
        return ConceptRef(ref.domain, ref.family, value=ref.value, absent=True)

    # Label draws from the domain's generator that value_shares counts (train split, fixed seed),
    # and the fewest matching rows for a conditional share (else the marginal one).
    SHARE_DRAWS = 60_000
    SHARE_MIN_ROWS = 500
    SHARE_DRAWS_PLACED = 600_000  # when a named place is given: a disc holds a few per cent of the draws

    def value_shares(self, domain: str, families: Sequence[str],
                     given: Sequence[ConceptRef], joint: bool = False) -> dict[tuple[str, ...], float] | None:
        """The training data's share of each combination of values of ``families`` among the
        examples where every discrete concept of ``given`` holds (known-absent ones: does not hold);
        a combination names None for a family none of whose values holds (an absent attribute).

        Counted on label draws from the domain's procedural generator, its whole one-object
        distribution (``label_arrays(..., split="domain")``: for scenes every shape × colour × size
        triple equally likely, the four held out of training included, so ``circle`` also draws
        large blue circles; the distribution metrics compare against the same reference); when
        fewer than SHARE_MIN_ROWS draws match, the marginal shares. A named place in ``given``
        (``position(x, y)``, drawn near it or not) holds where the object's centre is within the
        language's tolerance of the point, and a place drawn away from it (``~position(x, y)``)
        where it is farther; those are counted on SHARE_DRAWS_PLACED draws. None for a domain
        without a generator (own data): the compiler then gives equal shares.

        ``joint``: each share is of all the draws, not of those where ``given`` holds (the
        probability of the combination and ``given`` together; no marginal fallback, an empty
        dict where nothing matches); with no ``families``, {(): that probability}."""
        from conceptlang.data import DOMAIN_NAMES, label_arrays
        from conceptlang.syntax.semantics import POSITION_TOLERANCE

        if domain not in DOMAIN_NAMES:
            return None
        placed = [r for r in given if r.params is not None]
        draws = self.SHARE_DRAWS_PLACED if placed else self.SHARE_DRAWS
        key = ("labels", (domain, draws))  # the cache holds (name, key) pairs
        with self._lock:
            arrays = self._cache.get(key)
            if arrays is None:
                arrays = label_arrays(domain, draws, seed=0, split="domain")
                self._cache[key] = arrays
        dom = self._domains[domain]
        idx = {f: np.asarray(v)[:, 0] for f, v in arrays.index.items()}
        try:
            cols = [(idx[f], dom.family(f).values) for f in families]
        except (KeyError, DataError):
            return None
        rows_drawn = len(next(iter(idx.values())))
        mask = np.ones(rows_drawn, dtype=bool)
        for r in placed:
            pos = getattr(arrays, "positions", None)
            if pos is None or len(r.params) % pos.shape[-1]:
                continue
            centres = np.asarray(pos, dtype=np.float64)[:, 0, :]
            mask &= _place_holds(centres, r.params, POSITION_TOLERANCE, r.away)
            if r.avoid and not r.away:
                mask &= _place_holds(centres, r.avoid, POSITION_TOLERANCE, True)
        for r in given:
            if r.params is not None or r.family not in idx:
                continue
            if r.absent:
                mask &= idx[r.family] < 0
            else:
                values = dom.family(r.family).values
                if r.value not in values:
                    continue
                mask &= idx[r.family] == values.index(r.value)
        if not cols:
            return {(): float(mask.mean()) if joint else 1.0}
        if not joint and int(mask.sum()) < self.SHARE_MIN_ROWS:
            mask = np.ones_like(mask)
        counts: dict[tuple[str, ...], int] = {}
        rows = np.stack([c for c, _ in cols], axis=1)[mask]
        combos, n = np.unique(rows, axis=0, return_counts=True)
        for combo, k in zip(combos, n):
            # −1: no value of the family holds (a yes/no attribute known absent) → None
            counts[tuple(vals[i] if i >= 0 else None for i, (_, vals) in zip(combo, cols))] = int(k)
        total = rows_drawn if joint else sum(counts.values())
        return {c: k / total for c, k in counts.items()} if total else None

    # Draws per round of value_draws' rejection, and rounds before it falls back to the marginal.
    DRAW_BATCH = 4096
    DRAW_ROUNDS = 16

    def value_draws(self, domain: str, family: str | tuple[str, ...], given: Condition, n: int, seed: int,
                    near: Sequence[float] | None = None, radius: float | None = None,
                    objects: int = 1, away: bool = False, avoid: Sequence[float] = (),
                    avoid_radius: float | None = None, excluded: Mapping[str, Any] | None = None) -> np.ndarray | None:
        """``n`` draws (n, P) of the continuous family ``family``'s parameters as the data has them
        among the examples where every discrete value in ``given`` (family → value name, or the
        known-absent value) holds: fresh label draws from the domain's procedural generator, its
        whole one-object distribution (as :meth:`value_shares`), seeded by ``seed``. When no draw
        matches ``given`` in DRAW_ROUNDS rounds, the family's marginal. None where the domain has no
        generator or its labels do not carry the family (own data): the compiler then leaves the
        family to the model. Scenes ``position`` is the built-in domains' one such family.
        ``near``, ``radius``: only draws within ``radius`` of ``near`` (a named position spread over
        the disc where it holds); when none matches, ``near`` itself for every chain. ``away``: only
        draws farther than ``radius`` from ``near`` (``~position(x, y)``: where the point does not
        hold), or from each of its points when it holds several one after another (``~position(a)
        & ~position(b)``); when none matches, the draws away from the points whatever the other
        values. ``avoid`` (with ``near``, not ``away``): points, one after another, the draws also
        keep farther than ``avoid_radius`` from (``position(a) & ~position(b)`` with ``b`` close to
        ``a``); near a point and away from these, or ``near`` itself when none matches.

        ``family`` a tuple of discrete families: their values drawn together, as one object of the
        data's images with ``objects`` objects has them (:meth:`object_draws`); a tuple that starts
        with the continuous family, with ``near`` holding one point per object: whole layouts
        (:meth:`layout_draws`; ``given``: the values some object holds, ``excluded``: those no object
        holds, each family → a value name or a tuple of names)."""
        from conceptlang.data import DOMAIN_NAMES, label_arrays
        from conceptlang.models.conditions import ABSENT

        if not isinstance(family, str):
            if near is not None:
                return self.layout_draws(domain, tuple(family), n, seed, near, radius, objects, given, excluded)
            return self.object_draws(domain, tuple(family), n, seed, objects)
        if domain not in DOMAIN_NAMES or family != "position" or objects != 1:
            return None
        dom = self._domains.get(domain)
        try:
            fam = dom.family(family) if dom is not None else None
        except (KeyError, DataError):
            return None
        if fam is None or fam.kind != "continuous":
            return None
        wanted: list[tuple[str, int]] = []  # (family, value index; −1: known absent)
        for f, v in given.items():
            if v is ABSENT:
                wanted.append((f, -1))
            elif isinstance(v, str):
                try:
                    wanted.append((f, dom.family(f).values.index(v)))
                except (KeyError, ValueError, DataError):
                    continue
        batch = max(self.DRAW_BATCH, 8 * int(n)) * (16 if near is not None and not away else 1)
        centre = None if near is None else np.asarray(near, dtype=np.float64)
        shun = np.asarray(avoid, dtype=np.float64) if len(avoid) and centre is not None and not away else None

        def rows(round_: int, match: bool) -> np.ndarray:
            sub = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, round_]).generate_state(1)[0])
            arrays = label_arrays(domain, batch, seed=sub, split="domain")
            mask = np.ones(batch, dtype=bool)
            for f, i in wanted if match else ():
                if f in arrays.index:
                    col = np.asarray(arrays.index[f])[:, 0]
                    mask &= (col < 0) if i < 0 else (col == i)
            pos = np.asarray(arrays.positions, dtype=np.float64)[:, 0, :]  # (batch, P)
            if centre is not None and (match or away):
                mask &= _place_holds(pos, centre, float(radius if radius is not None else 0.0), away)
            if shun is not None and match:
                mask &= _place_holds(pos, shun, float(avoid_radius if avoid_radius is not None else 0.0), True)
            return pos[mask]  # (m, P)

        out: list[np.ndarray] = []
        got = 0
        for round_ in range(self.DRAW_ROUNDS):
            out.append(rows(round_, True))
            got += len(out[-1])
            if got >= n:
                return np.concatenate(out, 0)[:n]
        if got:  # a rare combination: its draws, cycled
            return np.concatenate(out, 0)[np.arange(n) % got]
        if centre is not None and not away:  # the named point itself
            return np.tile(centre, (int(n), 1))
        last = rows(self.DRAW_ROUNDS, False)  # the marginal (away from the point, for ``away``)
        return last[np.arange(n) % len(last)] if len(last) else None

    def layout_draws(self, domain: str, families: tuple[str, ...], n: int, seed: int, points: Sequence[float],
                     radius: float | None, objects: int, held: Mapping[str, Any] | None = None,
                     excluded: Mapping[str, Any] | None = None) -> np.ndarray | None:
        """``n`` layouts (n, k·(P + F)) of the data's images with ``objects`` = k objects in which
        object i's centre lies within ``radius`` of point i (``points``: k·P values), drawn as the
        data has them: per object, in the points' order, its centre (the P parameters of the
        continuous family ``families[0]``), then its value indices of the discrete ``families[1:]``
        (scenes: :func:`conceptlang.data.scenes.two_object_layouts_near`, exact). ``held``: family →
        values (a name or a tuple of names) that some object of the layout holds; ``excluded``: the
        same for values that no object of the layout holds. A rare layout's
        draws are cycled. None where the domain has no images with that many objects, or none with
        its objects there (two places closer than two of its objects can lie) and the values held."""
        from conceptlang.data.scenes import DISCRETE_FAMILIES, two_object_layouts_near

        if domain != "scenes" or int(objects) != 2 or not families or families[0] != "position" \
                or radius is None or len(points) != 4:
            return None
        if any(f not in dict(DISCRETE_FAMILIES) for f in families[1:]):
            return None
        want: dict[str, list[int]] = {}
        shun: dict[str, list[int]] = {}
        for into, given in ((want, held), (shun, excluded)):
            for f, vals in (given or {}).items():
                try:
                    values = self._domains[domain].family(f).values
                    into[f] = [values.index(v) for v in ((vals,) if isinstance(vals, str) else vals)]
                except (KeyError, ValueError, DataError):
                    return None
        got = two_object_layouts_near(int(n), seed, np.asarray(points, dtype=np.float64).reshape(2, 2),
                                      float(radius), held=want, excluded=shun)
        m = len(got.positions)
        if not m:
            return None
        cols = [np.asarray(got.positions, dtype=np.float64)]  # (m, 2, 2)
        cols += [np.asarray(got.index[f], dtype=np.float64)[..., None] for f in families[1:]]
        rows = np.concatenate(cols, axis=2).reshape(m, -1)  # per object: x, y, then each family
        return rows[np.arange(int(n)) % m]

    def object_draws(self, domain: str, families: tuple[str, ...], n: int, seed: int,
                     objects: int = 1) -> np.ndarray | None:
        """``n`` draws (n, F) of the discrete ``families``' value indices, drawn together as one
        object of the domain generator's images with ``objects`` objects has them (scenes
        ``objects`` 2: an object of the ``two_objects`` split, where both objects are small and
        each an allowed shape × colour pair; 1: the whole one-object distribution, as
        :meth:`value_shares`). Each row is one object, so the combinations the data never has are
        never drawn. The objects of a generated image are exchangeable and their attributes do
        not depend on where they are, so one object's draw stands for any of them. None where the
        domain has no generator with such images, or a family is not discrete (own data: the
        compiler then leaves the families to the model)."""
        from conceptlang.data import DOMAIN_NAMES, label_arrays

        if domain not in DOMAIN_NAMES or not families or domain not in self._domains:
            return None
        dom = self._domains[domain]
        try:
            if any(dom.family(f).kind != "discrete" for f in families):
                return None
            split = "domain" if objects == 1 else {2: "two_objects"}.get(int(objects))
            if split is None:
                return None
            sub = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(objects)]).generate_state(1)[0])
            arrays = label_arrays(domain, int(n), seed=sub, split=split)
        except (KeyError, DataError):
            return None
        if any(f not in arrays.index for f in families):
            return None
        return np.stack([np.asarray(arrays.index[f])[:, 0] for f in families], axis=1).astype(np.float64)

    def max_objects(self, ref: ConceptRef) -> int:
        """How many objects per image the training of the model serving ``ref`` covers (manifest
        ``max_objects``, default 1): how many values of a continuous family it composes."""
        model = self._by_family.get((ref.domain, ref.family))
        return int(getattr(model, "entry", {}).get("max_objects", 1)) if model is not None else 1

    def model_sets(self) -> list:
        """Other model sets the compiler may turn to (:func:`conceptlang.models.sets.model_sets_of`)."""
        if self._sets is None:
            from conceptlang.models.sets import model_sets_of

            self._sets = model_sets_of(self)
        return self._sets

    def concept_weight(self, ref: ConceptRef) -> float:
        """The calibrated weight of ``ref`` (its model entry's ``concept_weights``; 1 when absent).

        A concept whose learned energy is too flat (its guided samples miss it) is sharpened
        relative to the prior: the compiler scores it as E_prior + w·(E_c − E_prior) wherever it
        appears (CompileOptions.concept_weights; docs/models.md, "Calibrated concept weights").
        """
        model = self._by_family.get((ref.domain, ref.family))
        if ref.absent:  # the weights were calibrated for the concepts as named, not their absence
            return 1.0
        weights = getattr(model, "entry", {}).get("concept_weights", {}) if model is not None else {}
        return float(weights.get(ref.value if ref.params is None else ref.family, 1.0))

    def concept_weights_above(self, models: Sequence[ConceptModel]) -> float | None:
        """The noise level above which ``models``' calibrated concept weights act (their entries'
        ``concept_weights_above``; the lowest where several give one), or None: every level.

        A weight corrects a concept decided at high noise (an object's size); below that level the
        compiler scores concepts as written, which drops the weights' extra rows there."""
        levels = [float(e["concept_weights_above"]) for e in (getattr(m, "entry", {}) for m in models)
                  if e.get("concept_weights") and e.get("concept_weights_above") is not None]
        return min(levels) if levels else None

    def prior(self, domain: str) -> tuple[ConceptModel, Condition]:
        self.domain(domain)
        return self._priors[domain], {}

    def finisher(self, domain: str) -> tuple[ConceptModel, float] | None:
        """The domain's finishing model and the noise level below which it alone denoises (manifest
        ``finish_below``), or None."""
        self.domain(domain)
        handle = self._finishers.get(domain)
        return None if handle is None else (handle, float(handle.entry["finish_below"]))

    def sampler_settings(self, models: Sequence[ConceptModel]) -> dict:
        """The tuned settings of the model with the smallest step size (the most conservative)."""
        best: dict | None = None
        for m in models:
            entry = getattr(m, "entry", None)
            s = dict(entry.get("sampler", {})) if entry else {}
            if s and (best is None or float(s.get("step_size", float("inf"))) < float(best.get("step_size", float("inf")))):
                best = s
        return dict(best or {})

    # -- listing --
    def describe(self) -> list[dict]:
        out = []
        for e in self.entries:
            out.append({
                "name": e["name"], "domain": e["domain"], "kind": e["kind"], "layout": e["layout"],
                "families": {f: (s.get("values") or s.get("params")) for f, s in e["families"].items()},
                "prior": bool(e.get("prior", e["layout"] == "joint")),
                "file": e["file"], "sha256": e["sha256"],
                "bytes": self._file_bytes(e),
                "sampler": e.get("sampler", {}), "metrics": e.get("metrics", {}),
                "concept_weights": dict(e.get("concept_weights", {})),
                "max_objects": int(e.get("max_objects", 1)),
                "sigma_range": list(e["sigma_range"]) if "sigma_range" in e else None,
                "finish_below": e.get("finish_below"),
                **self._guidance_row(GuidanceSettings.of_entry(e), e["kind"] == "implicit"),
                "autoguide": (self._guide_row(e) if "autoguide" in e else None),
                "training": {k: e.get("training", {}).get(k) for k in ("method", "iterations", "seconds", "split", "warm_start")
                             if k in e.get("training", {})},
            })
        return out

    @staticmethod
    def _guidance_row(g: GuidanceSettings, implicit: bool) -> dict:
        return {"guidance": g.guidance, "guidance_interval": None if g.interval is None else list(g.interval),
                "sampling_guidance": g.sampling_guidance, "prior_below": g.prior_below,
                "prior_keeps": list(g.prior_keeps), "mirror_below": g.mirror_below,
                "guidance_summary": g.describe() if implicit and g.guided else None}

    def _guide_row(self, entry: dict) -> dict:
        spec = entry["autoguide"]
        row = {k: spec[k] for k in ("file", "sha256", "weight", "interval") if k in spec}
        row["bytes"] = self._file_bytes(guide_entry(entry))
        return row

    def _file_bytes(self, entry: dict) -> int | None:
        """Size of the entry's weights file; None when it is missing or lies outside the models folder."""
        try:
            path = weights_path(entry, self.models_dir)
        except ModelError:
            return None
        return path.stat().st_size if path.is_file() else None


def default_models_dir() -> Path:
    from conceptlang.resources import shipped_models_dir

    env = os.environ.get("CONCEPTLANG_MODELS")
    return Path(env) if env else shipped_models_dir()


def load_registry(models_dir: str | os.PathLike | None = None) -> ModelRegistry:
    """The registry for ``models_dir`` (None → $CONCEPTLANG_MODELS, else the shipped models)."""
    return ModelRegistry(models_dir if models_dir is not None else default_models_dir())
