"""check_text: every error in a program, each with its own position."""

from conceptlang.errors import NameResolutionError, ParseError
from conceptlang.syntax import check_text


def positions(errors):
    return [(e.location.line, e.location.column) for e in errors]


def test_valid_program_has_no_errors():
    assert check_text("happy = smiling & ~eyeglasses; # ok\nhappy & male") == []


def test_reports_an_error_in_every_statement():
    text = "a = b & ;\nc = (d | e;\nf = g h;\nf & c &"
    errors = check_text(text)
    assert all(isinstance(e, ParseError) for e in errors)
    assert positions(errors) == [(1, 9), (2, 11), (3, 7), (4, 8)]
    assert "after '&'" in errors[0].message
    assert "')'" in errors[1].message
    assert "operator" in errors[2].message
    assert "end of input" in errors[3].message
    # each error renders its own source line
    assert "c = (d | e;" in str(errors[1])


def test_statements_after_an_error_that_are_fine_are_not_reported():
    errors = check_text("a = b & ;\nc = d;\nc | a")
    assert positions(errors) == [(1, 9)]


def test_a_plain_expression_before_the_last_statement_is_reported():
    errors = check_text("a = ~;\nb & c;\nd")
    assert positions(errors) == [(1, 6), (2, 1)]
    assert "expected a definition" in errors[1].message


def test_semicolons_in_comments_do_not_split_statements():
    errors = check_text("a = b # ; c\n & ;\nd = e |;\nd")
    assert positions(errors) == [(2, 4), (3, 8)]


def test_definition_errors_are_all_reported():
    errors = check_text("a = b; a = c; x = y; y = x; a")
    assert [type(e) for e in errors] == [NameResolutionError, NameResolutionError]
    assert "defined twice" in errors[0].message and "x -> y -> x" in errors[1].message


def test_empty_input():
    errors = check_text("")
    assert len(errors) == 1 and "empty" in errors[0].message
