"""Text → AST. The grammar lives in grammar/concepts.lark and is loaded once, lazily (LALR).

The AST is built by a transformer embedded in the LALR parser, so no intermediate parse tree is
made and nothing recurses per nesting level: 10,000 levels of parentheses parse in linear time.
Lark's exceptions never escape: they become :class:`~conceptlang.errors.ParseError` with a
sentence saying what was expected, and the line, column, source line and caret.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from typing import Iterable

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from conceptlang.errors import ParseError, SourceLocation
from conceptlang.resources import grammar_path
from conceptlang.syntax.ast import And, Concept, Definition, Expr, Not, Or, Program, Span, Weighted

# --------------------------------------------------------------------------------------------
# Building the AST


class _BadLiteral(Exception):
    """Raised inside the parser callbacks; turned into a ParseError with the source attached."""

    def __init__(self, message: str, token: Token):
        super().__init__(message)
        self.message = message
        self.token = token


def _number(tok: Token) -> float:
    """A NUMBER token's value; overflow to ±inf and underflow of a non-zero literal to 0 (such as
    1e-400) are both errors, as the literal would not mean the number written."""
    value = float(tok)
    if not math.isfinite(value):
        raise _BadLiteral(
            f"the number {tok.value} is out of range: weights and arguments must be finite numbers "
            f"(at most about 1.8e308 in magnitude)",
            tok,
        )
    if value == 0.0 and any(ch in "123456789" for ch in tok.value.lower().split("e", 1)[0]):
        raise _BadLiteral(
            f"the number {tok.value} is too small: it would be rounded to 0 (non-zero weights and "
            f"arguments must be at least about 4.9e-324 in magnitude)",
            tok,
        )
    return value


# The text being parsed, for the spans (the builder is shared by all parses; one per thread).
_CURRENT = threading.local()


def _tok_span(tok: Token, end: int | None = None) -> Span:
    return Span(tok.line, tok.column, tok.start_pos, tok.end_pos if end is None else end, _CURRENT.text)


def _join_span(first: Span, last: Span) -> Span:
    return Span(first.line, first.column, first.start, last.end, first.source)


class _Builder(Transformer):
    """Callbacks run by the LALR parser at each reduction (no parse tree is built)."""

    def concept(self, children: list) -> Concept:
        name_tok = children[0]
        family = None
        name = name_tok.value
        args = None
        end = name_tok.end_pos
        for child in children[1:]:
            if isinstance(child, Token):  # the value after "family."
                family, name = name, child.value
                end = child.end_pos
            else:
                args, end = child
        return Concept(name, family, args, _tok_span(name_tok, end))

    def arguments(self, children: list) -> tuple[tuple[float, ...], int]:
        values = tuple(_number(t) for t in children if t.type == "NUMBER")
        return values, children[-1].end_pos

    def not_(self, children: list) -> Not:
        tok, expr = children
        return Not(expr, _tok_span(tok, expr.span.end))

    def weighted(self, children: list) -> Weighted:
        tok, expr = children
        return Weighted(_number(tok), expr, _tok_span(tok, expr.span.end))

    def and_(self, children: list) -> And:
        return And(tuple(children), _join_span(children[0].span, children[-1].span))

    def or_(self, children: list) -> Or:
        return Or(tuple(children), _join_span(children[0].span, children[-1].span))

    def definition(self, children: list) -> Definition:
        tok, expr = children
        return Definition(tok.value, expr, _tok_span(tok, expr.span.end))

    def start(self, children: list) -> Program:
        *definitions, body = children
        first = definitions[0].span if definitions else body.span
        return Program(tuple(definitions), body, _join_span(first, body.span))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    # One shared LALR parser with the AST builder embedded (built on first use, ~50 ms).
    return Lark.open(str(grammar_path()), parser="lalr", transformer=_Builder(), maybe_placeholders=False)


@lru_cache(maxsize=1)
def _lexer_parser() -> Lark:
    # A plain instance used only on the error path, to find the tokens before an error.
    return Lark.open(str(grammar_path()), parser="lalr", maybe_placeholders=False)


# --------------------------------------------------------------------------------------------
# Public entry points


def parse(text: str) -> Program:
    """Parse a program: zero or more ``name = expr;`` definitions, then one expression.

    Names are not resolved here (``~frowning`` parses whatever the registry holds).
    Raises :class:`ParseError` on malformed text.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse() takes a str, not {type(text).__name__}")
    parser = _parser()
    _CURRENT.text = text
    try:
        return parser.parse(text)
    except _BadLiteral as bad:
        raise ParseError(bad.message, _location(text, bad.token.start_pos)) from None
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    except LarkError as err:  # pragma: no cover - any other Lark failure still gets our type
        raise ParseError(f"cannot parse the expression: {err}", _location(text, 0)) from None
    finally:
        _CURRENT.text = ""


def parse_expr(text: str) -> Expr:
    """Parse a single expression (no definitions) and return its root node."""
    program = parse(text)
    if program.definitions:
        first = program.definitions[0]
        raise ParseError(
            f"expected a single expression, but found the definition of {first.name!r}; "
            "use parse() for programs with definitions and expand_definitions() to inline them",
            _location(text, first.span.start),
        )
    return program.body


# --------------------------------------------------------------------------------------------
# Error messages

_OPERAND = "an operand (a concept name, '(', '~' or a weight such as '2 *')"
_OPERATOR = "an operator ('&' or '|')"
_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "NOT": "'~'",
    "LPAR": "'('",
    "RPAR": "')'",
    "AMPERSAND": "'&'",
    "VBAR": "'|'",
    "STAR": "'*'",
    "COMMA": "','",
    "SEMICOLON": "';'",
    "EQUAL": "'='",
    "DOT": "'.'",
    "$END": "the end of the input",
    "<END-OF-FILE>": "the end of the input",
}


def _location(text: str, offset: int) -> SourceLocation:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return SourceLocation(line, column, text)


def _describe_expected(expected: Iterable[str]) -> str:
    names = set(expected) - {"WS", "COMMENT"}
    words: list[str] = []
    if {"NAME", "LPAR", "NOT"} <= names:
        words.append(_OPERAND)
        names -= {"NAME", "LPAR", "NOT", "NUMBER"}
    if {"AMPERSAND", "VBAR"} <= names:
        words.append(_OPERATOR)
        # After a concept name, '.', '(' and '=' are also legal, but almost never what was meant.
        names -= {"AMPERSAND", "VBAR", "DOT", "LPAR", "EQUAL"}
    order = ["RPAR", "SEMICOLON", "NUMBER", "COMMA", "STAR", "NAME", "LPAR", "NOT", "DOT", "EQUAL", "$END", "<END-OF-FILE>"]
    words += [_WORDS[n] for n in order if n in names]
    words += sorted(f"'{n}'" for n in names if n not in _WORDS)
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of input"
    value = tok.value if len(tok.value) <= 20 else tok.value[:20] + "..."
    if tok.type == "NAME":
        return f"name {value!r}"
    if tok.type == "NUMBER":
        return f"number {value}"
    return f"'{value}'"


def _tokens_before(text: str, offset: int) -> list[Token]:
    """The tokens that end at or before ``offset`` (lexing stops at the first bad character)."""
    tokens: list[Token] = []
    try:
        for tok in _lexer_parser().lex(text):
            if tok.end_pos > offset:
                break
            tokens.append(tok)
    except LarkError:
        pass
    return tokens


def _unclosed_paren(tokens: list[Token]) -> Token | None:
    open_stack: list[Token] = []
    for tok in tokens:
        if tok.type == "LPAR":
            open_stack.append(tok)
        elif tok.type == "RPAR" and open_stack:
            open_stack.pop()
    return open_stack[-1] if open_stack else None


def _syntax_error(text: str, err: UnexpectedInput) -> ParseError:
    if isinstance(err, UnexpectedCharacters):
        offset = err.pos_in_stream
        char = text[offset] if offset < len(text) else ""
        expected = _describe_expected(err.allowed or ())
        message = f"unexpected character {char!r}: expected {expected}"
        if char == "-":
            message += " ('-' only starts a negative number, as in '-1.5 * a'; to negate a concept, write '~a')"
        elif char in "!^":
            message += " (write '~' for not, '&' for and, '|' for or)"
        return ParseError(message, _location(text, offset))

    if isinstance(err, UnexpectedToken):
        tok = err.token
        expected_names = set(err.expected)
        at_end = tok.type == "$END"
        offset = tok.start_pos if not at_end else len(text)
    elif isinstance(err, UnexpectedEOF):  # pragma: no cover - LALR reports $END as a token
        tok = Token("$END", "")
        expected_names = set(err.expected)
        at_end = True
        offset = len(text)
    else:  # pragma: no cover
        return ParseError(f"cannot parse the expression: {err}", _location(text, 0))

    before = _tokens_before(text, offset)
    prev = before[-1] if before else None
    if at_end:
        if prev is None:
            return ParseError("the input is empty: expected an expression", _location(text, 0))
        # Point just after the last token, not at trailing whitespace or comments.
        offset = prev.end_pos

    if "RPAR" in expected_names and _unclosed_paren(before) is None:
        # The lexer state may list ')' although no '(' is open; do not suggest it.
        expected_names.discard("RPAR")
    expected = _describe_expected(expected_names)
    found = _describe_token(tok)
    message = f"unexpected {found}: expected {expected}"
    if expected.startswith(_OPERAND) and prev is not None and prev.type in {
        "AMPERSAND",
        "VBAR",
        "NOT",
        "STAR",
        "LPAR",
        "EQUAL",
        "SEMICOLON",
    }:
        message = f"unexpected {found}: expected {expected} after '{prev.value}'"
    hint = _hint(text, err, expected_names, tok, prev, before)
    if hint:
        message += f" ({hint})"
    return ParseError(message, _location(text, offset))


def _hint(text: str, err: UnexpectedInput, expected: set[str], tok: Token, prev: Token | None, before: list[Token]) -> str:
    if "RPAR" in expected and tok.type == "$END":
        lpar = _unclosed_paren(before)
        if lpar is not None:
            return f"the '(' at line {lpar.line}, column {lpar.column} is never closed"
    if tok.type == "STAR" and prev is not None and prev.type != "NUMBER":
        return "a weight goes before what it scales, as in '2.5 * smiling'"
    if tok.type == "NAME" and {"AMPERSAND", "VBAR"} <= expected:
        return "two operands need an operator between them, such as '&' or '|'"
    if tok.type in {"AMPERSAND", "VBAR"} and prev is not None and prev.type == tok.type:
        return f"write a single '{tok.value}'"
    if tok.type == "$END" and prev is not None and prev.type == "SEMICOLON" and "NAME" in expected:
        return "definitions must be followed by the expression to evaluate"
    if tok.type == "NAME" and prev is not None and prev.type == "NUMBER":
        return "a weight needs '*', as in '2 * smiling'"
    statement = _current_statement(before)
    if tok.type == "$END" and "SEMICOLON" in expected and any(t.type == "EQUAL" for t in statement):
        return "a definition 'name = expression;' ends with ';' and is followed by the expression to evaluate"
    if prev is not None and prev.type == "SEMICOLON" and ({"$END", "<END-OF-FILE>"} & expected):
        return "only definitions 'name = expression;' may come before the final expression"
    if tok.type == "EQUAL":
        return "a definition 'name = expression;' starts with a single name"
    return ""


def _current_statement(tokens: list[Token]) -> list[Token]:
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i].type == "SEMICOLON":
            return tokens[i + 1 :]
    return tokens
