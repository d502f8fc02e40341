"""Error positions: line counting and line splitting agree for every kind of line-ish character,
the caret sits under the reported column, and number literals that underflow are refused."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conceptlang.errors import ParseError, SourceLocation
from conceptlang.syntax import check_text, parse

# Characters str.splitlines() breaks at but the grammar does not (only "\n" ends a line there).
ODD_BREAKS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def _shown(line: str) -> str:
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in line)


def _check_location(text: str, err: ParseError) -> None:
    """The error's line/column address a real place of ``text`` (lines split at "\\n" only), the
    rendered source line is that line, and the caret sits under the column."""
    loc = err.location
    assert loc is not None
    lines = text.split("\n")
    assert 1 <= loc.line <= len(lines)
    line = lines[loc.line - 1]
    assert 1 <= loc.column <= len(line) + 1
    shown, caret = loc.render().split("\n")
    expected = _shown(line[:-1] if line.endswith("\r") else line)
    assert shown == "  " + expected[:loc.column + 59]  # lines here are short: no "..." window
    assert caret == "  " + " " * (loc.column - 1) + "^"


@pytest.mark.parametrize(
    "text, line, column, shown",
    [
        ("a &\r(", 1, 6, "a & ("),
        ("a &\x0b(", 1, 4, "a & ("),  # \x0b is not whitespace to the grammar
        ("a &\x0c(", 1, 6, "a & ("),
        ("a\x85& b", 1, 2, "a & b"),
        ("a &\u2028(b", 1, 4, "a & (b"),
        ("a\r\n& (\r\nb", 3, 2, "b"),  # CRLF lines: the \r is not shown
        ("x = a;\n\tb &\t(", 2, 7, " b & ("),
    ],
)
def test_caret_line_and_column_for_odd_line_characters(text, line, column, shown):
    with pytest.raises(ParseError) as info:
        parse(text)
    loc = info.value.location
    assert (loc.line, loc.column) == (line, column)
    assert loc.render() == f"  {shown}\n  {' ' * (column - 1)}^"
    _check_location(text, info.value)
    # check_text reports the same error at the same place.
    (err,) = check_text(text)
    assert (err.location.line, err.location.column) == (line, column)


def test_a_comment_runs_to_the_newline_only():
    # "\r" does not end a comment, so "#c\rfoo" is all comment; check_text agrees with parse.
    with pytest.raises(ParseError, match="the input is empty"):
        parse("#c\rfoo")
    assert [e.message for e in check_text("#c\rfoo")] == ["the input is empty: expected an expression"]
    assert parse("x = a; #c\rmore\nx").body.name == "x"
    assert check_text("x = a; #c\rmore\nx") == []


def test_characters_the_grammar_does_not_skip_are_errors_in_check_too():
    # "\x85" is whitespace to str.isspace() but not to the grammar: check_text must not skip it.
    for text in ("a;\x85 b", "x = a;\u2028 x", "x = a;\n\x0bx"):
        with pytest.raises(ParseError) as info:
            parse(text)
        errs = check_text(text)
        assert len(errs) == 1 and str(errs[0]) == str(info.value)


def test_render_clamps_and_windows():
    assert SourceLocation(5, 1, "ab").render() == "  ab\n  ^"
    long = "x" * 300 + "\r"
    shown, caret = SourceLocation(1, 150, long).render().split("\n")
    assert shown == "  ..." + "x" * 120 + "..." and caret.index("^") == 2 + 3 + 60


_PIECES = ["a", "b", "&", "|", "~", "(", ")", "2 *", ";", "=", ",", " ", "\n", "\r\n", "#c", "1e400", *ODD_BREAKS]


@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=14))
def test_every_error_location_matches_its_rendered_line(pieces):
    text = "".join(pieces)
    try:
        parse(text)
    except ParseError as err:
        _check_location(text, err)
    for err in check_text(text):
        if err.location is not None:
            _check_location(text, err)


@pytest.mark.parametrize("literal", ["1e-400", "-1e-400", "0.5e-330", "123e-999", ".1e-400"])
def test_underflowing_numbers_are_refused(literal):
    with pytest.raises(ParseError, match=f"the number {literal} is too small: it would be rounded to 0") as info:
        parse(f"{literal} * a")
    assert (info.value.location.line, info.value.location.column) == (1, 1)
    with pytest.raises(ParseError, match="too small"):
        parse(f"position(0.5, {literal})")


@pytest.mark.parametrize("literal, value", [("0", 0.0), ("0e-400", 0.0), ("-0.0", -0.0), ("00.000e5", 0.0),
                                            ("5e-324", 5e-324), ("1e-300", 1e-300)])
def test_zero_and_tiny_but_representable_numbers_are_accepted(literal, value):
    assert parse(f"{literal} * a").body.weight == value
