"""Suite files: the lists of expressions ``conceptlang eval`` measures.

Format (UTF-8 text, one entry per line)::

    # a comment; blank lines are ignored
    @domain scenes              # header: the domain every entry samples from (optional)
    [held-out]                  # a section: its tags apply to the entries below it
    circle & red                # an entry: an expression (or a one-line program)
    red_disc: circle & red      # an entry with a name
    [and, held-out]             # several tags; "[]" clears them

A tuning list (``training/*_tuning.txt``, :func:`load_tuning_list`) has the same syntax, but its
``@domain`` header may change part-way: it is read as one suite per domain run.

Each entry is parsed when the suite is loaded, so a typo fails before any sampling starts, with
the suite file's line number. The operator class (single, and, not, or, nested) and the number of
distinct concepts are inferred from the expression's syntax tree after definitions are expanded;
they are what the summary tables group by.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from conceptlang.errors import ConceptLangError, ParseError
from conceptlang.syntax.ast import And, Concept, Expr, Not, Or, Weighted

OPERATOR_CLASSES = ("single", "and", "not", "or", "nested")

_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*:(?!:)\s*(.*)$")
_SECTION = re.compile(r"^\s*\[(.*)\]\s*$")
_HEADER = re.compile(r"^\s*@([A-Za-z_]+)\s*(.*?)\s*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")


class SuiteError(ParseError):
    """A suite file is malformed (bad header, section, or an entry that does not parse)."""


@dataclass(frozen=True)
class SuiteEntry:
    name: str
    text: str
    expr: Expr = field(compare=False)
    operator: str
    n_concepts: int
    tags: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Suite:
    entries: tuple[SuiteEntry, ...]
    domain: str | None = None
    path: str | None = None

    def __len__(self) -> int:
        return len(self.entries)


def _strip(e: Expr) -> Expr:
    while isinstance(e, Weighted):
        e = e.expr
    return e


def _is_literal(e: Expr) -> bool:
    return isinstance(_strip(e), Concept)


def _is_negated_literal(e: Expr) -> bool:
    e = _strip(e)
    return isinstance(e, Not) and _is_literal(e.expr)


def operator_class(expr: Expr) -> str:
    """single | and | not | or | nested, from the shape of a (definition-free) expression.

    Weights are ignored. ``not`` covers a negated concept alone and a conjunction of concepts with
    at least one negated concept (grounded negation); ``or`` is a disjunction of plain concepts;
    anything deeper is ``nested``.
    """
    e = _strip(expr)
    if isinstance(e, Concept):
        return "single"
    if _is_negated_literal(e):
        return "not"
    if isinstance(e, And):
        terms = _flatten_and(e)
        if all(_is_literal(t) for t in terms):
            return "and"
        if all(_is_literal(t) or _is_negated_literal(t) for t in terms):
            return "not"
        return "nested"
    if isinstance(e, Or):
        terms = _flatten_or(e)
        if all(_is_literal(t) for t in terms):
            return "or"
    return "nested"


def _flatten_and(e: And) -> list[Expr]:
    out: list[Expr] = []
    for t in e.terms:
        s = _strip(t)
        out.extend(_flatten_and(s) if isinstance(s, And) else [t])
    return out


def _flatten_or(e: Or) -> list[Expr]:
    out: list[Expr] = []
    for t in e.terms:
        s = _strip(t)
        out.extend(_flatten_or(s) if isinstance(s, Or) else [t])
    return out


def count_concepts(expr: Expr) -> int:
    """Number of distinct concept leaves (``a & ~a`` counts one)."""
    from conceptlang.syntax import concepts_of

    return len(concepts_of(expr))


def parse_entry_text(text: str) -> Expr:
    """Parse an entry (an expression or a one-line program) and expand its definitions."""
    from conceptlang.syntax import expand_definitions, parse

    return expand_definitions(parse(text))


def parse_suite(text: str, path: str | None = None) -> Suite:
    where = path or "<suite>"
    entries: list[SuiteEntry] = []
    names: dict[str, int] = {}
    tags: tuple[str, ...] = ()
    domain: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        # The language has no string literals, so the first '#' always starts a comment.
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _HEADER.match(line)
        if m:
            key, value = m.group(1), m.group(2)
            if key != "domain":
                raise SuiteError(f"{where}, line {lineno}: unknown header '@{key}' (known: @domain)")
            if not value or not _TAG.match(value):
                raise SuiteError(f"{where}, line {lineno}: '@domain' needs one domain name, got {value!r}")
            if domain is not None and domain != value:
                raise SuiteError(f"{where}, line {lineno}: second '@domain' header ({value!r} after {domain!r})")
            domain = value
            continue
        m = _SECTION.match(line)
        if m:
            parts = [p.strip() for p in m.group(1).split(",") if p.strip()]
            bad = [p for p in parts if not _TAG.match(p)]
            if bad:
                raise SuiteError(f"{where}, line {lineno}: bad section tag(s) {bad!r}: use letters, digits, '_' and '-'")
            tags = tuple(parts)
            continue
        m = _NAME.match(line)
        # "name: expr" only when the text after the colon is non-empty; definitions use '=' and ';'.
        if m and m.group(2):
            name, expr_text = m.group(1), m.group(2).strip()
        else:
            name, expr_text = line, line
        try:
            expr = parse_entry_text(expr_text)
        except ConceptLangError as err:
            raise SuiteError(f"{where}, line {lineno}: {err}") from None
        if name in names:
            raise SuiteError(f"{where}, line {lineno}: entry name {name!r} already used on line {names[name]}")
        names[name] = lineno
        entries.append(
            SuiteEntry(
                name=name,
                text=expr_text,
                expr=expr,
                operator=operator_class(expr),
                n_concepts=count_concepts(expr),
                tags=tags,
                line=lineno,
            )
        )
    if not entries:
        raise SuiteError(f"{where}: no expressions in the suite")
    return Suite(entries=tuple(entries), domain=domain, path=path)


def parse_tuning_list(text: str, path: str | None = None) -> list[Suite]:
    """A tuning list (``training/*_tuning.txt``): suite syntax, but an ``@domain`` header may switch
    the domain part-way. One :class:`Suite` per header's run of entries, in file order, each parsed
    by :func:`parse_suite` with the file's line numbers; entries before any header form a suite
    without a domain."""
    lines = text.splitlines()

    def code(raw: str) -> str:
        return raw.split("#", 1)[0].strip()

    headers = [i for i, raw in enumerate(lines) if (m := _HEADER.match(code(raw))) and m.group(1) == "domain"]
    starts = sorted({0, *headers})
    suites = []
    for start, end in zip(starts, [*starts[1:], len(lines)]):
        block = lines[start:end]
        if any(code(raw) and not _HEADER.match(code(raw)) and not _SECTION.match(code(raw)) for raw in block):
            suites.append(parse_suite("\n" * start + "\n".join(block), path))
    if not suites:
        raise SuiteError(f"{path or '<tuning list>'}: no expressions in the list")
    return suites


def _read(path: str | Path) -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"suite file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(f"cannot read suite file {p}: {err}") from None


def load_suite(path: str | Path) -> Suite:
    return parse_suite(_read(path), path=str(Path(path)))


def load_tuning_list(path: str | Path) -> list[Suite]:
    """:func:`parse_tuning_list` of the file ``path``."""
    return parse_tuning_list(_read(path), path=str(Path(path)))
