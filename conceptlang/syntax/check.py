"""Validate a program and report *every* error, not just the first (for ``conceptlang check``).

The LALR parser stops at the first syntax error. To report later ones too, the text is split
into statements at ``;`` (the only statement separator; comments are skipped) and each statement
after the broken one is parsed on its own, at its original line and column. Definition problems
(duplicates, cycles, shadowing) are reported when the whole text parses.
"""

from __future__ import annotations

from typing import Collection

from conceptlang.errors import ConceptLangError, ParseError, SourceLocation
from conceptlang.syntax.parser import parse
from conceptlang.syntax.passes import definition_errors

MAX_ERRORS = 50


def _statements(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the ';'-separated statements; the ';' itself is excluded."""
    spans, start, i, n = [], 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if ch == ";":
            spans.append((start, i))
            start = i + 1
        i += 1
    spans.append((start, n))
    return spans


# The grammar's whitespace (lark's common.WS); lines end at "\n" only, as comments do.
_WS = " \t\f\r\n"


def _blank(segment: str) -> bool:
    return all(not line.split("#", 1)[0].strip(_WS) for line in segment.split("\n")) if segment else True


def _skip_blank(text: str, start: int, end: int) -> int:
    """The offset of the statement's first token (after whitespace and comments)."""
    i = start
    while i < end:
        if text[i] == "#":
            nl = text.find("\n", i, end)
            i = end if nl < 0 else nl + 1
        elif text[i] in _WS:
            i += 1
        else:
            break
    return i


def _offset_of(text: str, line: int, column: int) -> int:
    pos = 0
    for _ in range(line - 1):
        pos = text.index("\n", pos) + 1
    return pos + column - 1


def _parse_piece(text: str, start: int, end: int, as_definition: bool) -> ParseError | None:
    """Parse text[start:end] in place (padded so that lines and columns match the original)."""
    start = _skip_blank(text, start, end)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    padding = "\n" * (line - 1) + " " * (col - 1)
    piece = padding + text[start:end]
    # A definition is checked as "name = expr; _" (a placeholder body after it).
    candidate = piece + ";_" if as_definition else piece
    try:
        parse(candidate)
        return None
    except ParseError as err:
        loc = err.location
        offset_in_candidate = _offset_of(candidate, loc.line, loc.column) if loc else len(padding)
        if as_definition and offset_in_candidate > len(piece):
            return ParseError(
                "expected a definition 'name = expression;' here (only the last statement may be "
                "a plain expression)",
                SourceLocation(line, col, text),
            )
        location = SourceLocation(loc.line, loc.column, text) if loc else SourceLocation(line, col, text)
        return ParseError(err.message, location)


def check_text(text: str, concepts: Collection[str] | None = None) -> list[ConceptLangError]:
    """All errors in a program's text (empty list when it is valid), in source order.

    ``concepts``: names that definitions must not shadow (e.g. a registry's concept names).
    """
    try:
        program = parse(text)
    except ParseError as first:
        errors: list[ConceptLangError] = [first]
        if first.location is None:
            return errors
        first_offset = _offset_of(text, first.location.line, first.location.column) if text else 0
        statements = [s for s in _statements(text) if not _blank(text[s[0] : s[1]])]
        later = [s for s in statements if s[0] > first_offset and not (s[0] <= first_offset <= s[1])]
        # Statements that begin after the first error; the last one is the final expression.
        for _i, (start, end) in enumerate(later):
            is_last = (start, end) == statements[-1]
            err = _parse_piece(text, start, end, as_definition=not is_last)
            if err is not None:
                errors.append(err)
            if len(errors) >= MAX_ERRORS:
                break
        return errors
    return list(definition_errors(program, concepts))
