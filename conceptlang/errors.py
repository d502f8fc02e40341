"""The one exception family of ConceptLang.

Every error a user can provoke derives from :class:`ConceptLangError`. Errors that point into
source text carry a :class:`SourceLocation` and render the offending line with a caret.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


def _visible(ch: str) -> str:
    """A character as shown in an error's source line: control, format and line/paragraph
    separator characters (tab, CR, \\x0b, \\x0c, \\x85, \\u2028, a BOM...) become one space, so
    the line prints on one terminal line and the caret below it stays in its column."""
    return " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch


@dataclass(frozen=True)
class SourceLocation:
    """A 1-based line/column position in a source text, plus the text itself for rendering.

    Lines are separated by ``\\n`` alone (a ``\\r\\n`` line ends with ``\\n`` too), as the parser
    and the grammar's comments count them; ``\\r``, ``\\x0b``, ``\\x0c``, ``\\x85`` and ``\\u2028`` do
    not start a new line. The column counts characters from 1.
    """

    line: int
    column: int
    source: str = ""

    def render(self) -> str:
        lines = self.source.split("\n")
        idx = min(max(self.line - 1, 0), len(lines) - 1)
        text = lines[idx]
        if text.endswith("\r"):  # CRLF line ending
            text = text[:-1]
        # Very long lines (100,000-concept inputs) are cut to a window around the column.
        col = max(self.column - 1, 0)
        start = max(col - 60, 0)
        snippet = "".join(_visible(ch) for ch in text[start : col + 60])
        prefix = "..." if start > 0 else ""
        suffix = "..." if col + 60 < len(text) else ""
        caret_pad = " " * (len(prefix) + col - start)
        return f"  {prefix}{snippet}{suffix}\n  {caret_pad}^"


class ConceptLangError(Exception):
    """Root of every error ConceptLang raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, location: SourceLocation | None = None):
        self.message = message
        self.location = location
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        loc = self.location
        return f"{self.message}\n at line {loc.line}, column {loc.column}:\n{loc.render()}"


class ParseError(ConceptLangError):
    """The text is not a well-formed ConceptLang program."""

    exit_code = 2


class NameResolutionError(ConceptLangError):
    """A concept or definition name does not resolve (unknown, ambiguous, cyclic, shadowing)."""

    exit_code = 2


class CompileError(ConceptLangError):
    """The expression is well formed but cannot be lowered (unsupported operator for a model kind...)."""


class ExpressionError(CompileError):
    """The expression asks what its concepts cannot give: a concept's arguments (how many, their
    range) or concepts of different domains composed. An error in the text, like a parse error."""

    exit_code = 2


class SamplingError(ConceptLangError):
    """The sampler failed (non-finite values, bad settings)."""


class ModelError(ConceptLangError):
    """A model or manifest is missing, malformed, or fails its checksum."""


class DataError(ConceptLangError):
    """A data set or domain is missing or malformed."""


class OutputError(ConceptLangError):
    """An output file or folder cannot be written (checked before the work that would fill it)."""
