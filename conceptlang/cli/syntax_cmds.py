"""``conceptlang parse`` and ``conceptlang check``: the language on the command line (no torch)."""

from __future__ import annotations

import json

import click

from conceptlang.cli.common import read_source
from conceptlang.errors import ConceptLangError, ParseError


def _with_origin(err: ConceptLangError, origin: str) -> ConceptLangError:
    """The same error with the file name in front of its message."""
    return type(err)(f"{origin}: {err.message}", err.location)


@click.command("parse")
@click.argument("expression", required=False)
@click.option("-f", "--file", "file", metavar="FILE", help="Read the program from FILE ('-' for stdin).")
@click.option("--json", "as_json", is_flag=True, help="Print the syntax tree as JSON.")
@click.option("--text", "as_text", is_flag=True, help="Print the program back as text, with minimal parentheses.")
@click.option("--expand", is_flag=True, help="Inline the definitions first (cycles and duplicates are errors).")
@click.option(
    "--max-depth", type=click.IntRange(min=1), default=60, show_default=True, help="Summarise the tree below this depth."
)
def parse_cmd(expression: str | None, file: str | None, as_json: bool, as_text: bool, expand: bool, max_depth: int) -> None:
    """Parse EXPRESSION (or -f FILE, or '-' for stdin) and print its syntax tree.

    \b
    Examples:
      conceptlang parse "(male & smiling) | ~black_hair"
      conceptlang parse --json "2.5 * smiling & ~eyeglasses"
      echo "happy = smiling & ~eyeglasses; happy & male" | conceptlang parse -
    """
    from conceptlang.syntax import Program, expand_definitions, format_tree, parse, to_json, unparse

    if as_json and as_text:
        raise click.UsageError("choose one of --json and --text")
    if expression is not None and file is not None:
        raise click.UsageError("give either an EXPRESSION or -f FILE, not both")
    if expression is None and file is None:
        raise click.UsageError("give an EXPRESSION, -f FILE, or '-' to read standard input")
    if file is not None:
        origin, text = ("<stdin>" if file == "-" else file), read_source(file)
    elif expression == "-":
        origin, text = "<stdin>", read_source("-")
    else:
        origin, text = None, expression
    try:
        tree = parse(text)
        if expand:
            tree = expand_definitions(tree)
    except ConceptLangError as err:
        raise (_with_origin(err, origin) if origin else err) from None
    if as_json:
        click.echo(to_json(tree))
    elif as_text:
        click.echo(unparse(tree))
    else:
        # A program without definitions reads better as just its expression.
        shown = tree.body if isinstance(tree, Program) and not tree.definitions else tree
        click.echo(format_tree(shown, max_depth=max_depth))


def _resolve_errors(text: str, registry) -> list[ConceptLangError]:
    """The first error compiling a syntactically valid program against ``registry`` finds (an
    unknown or ambiguous name, wrong arguments, concepts of different domains, a definition that
    shadows a concept), as a list; warnings such as an unsatisfiable expression are not errors."""
    import warnings

    from conceptlang.compiler import compile as compile_expr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile_expr(text, registry)
    except ConceptLangError as err:
        return [err]
    return []


@click.command("check")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print the errors as a JSON list.")
@click.option("--resolve", is_flag=True,
              help="Also compile each valid program against the models, so that unknown names, wrong concept "
                   "arguments and mixed domains are reported too (loads torch).")
@click.option("--models", "models", metavar="DIR", default=None,
              help="With --resolve: the models folder (default: $CONCEPTLANG_MODELS or the shipped models).")
def check_cmd(files: tuple[str, ...], as_json: bool, resolve: bool, models: str | None) -> None:
    """Validate ConceptLang program files ('-' for stdin) and report every error with its position.

    Each file holds one program: optional definitions (name = expr;) then one expression. Without
    --resolve only the text is checked (syntax and definitions); with it, each valid program is
    also compiled against the models. Exits with 0 when all files are valid and 2 otherwise.
    """
    from conceptlang.syntax import check_text

    if models is not None and not resolve:
        raise click.UsageError("--models is an option of --resolve")
    registry = None
    if resolve:
        from conceptlang.cli.common import load_registry_for

        registry = load_registry_for(models)
    records: list[dict] = []
    failed = 0
    for path in files:
        origin = "<stdin>" if path == "-" else path
        try:
            text = read_source(path)
        except click.UsageError as err:
            failed += 1
            records.append({"file": origin, "line": None, "column": None, "kind": "UsageError", "message": err.message})
            if not as_json:
                click.echo(f"error: {err.message}", err=True)
            continue
        errors = check_text(text)
        if not errors and registry is not None:
            errors = _resolve_errors(text, registry)
        if errors:
            failed += 1
        for err in errors:
            loc = err.location
            records.append(
                {
                    "file": origin,
                    "line": loc.line if loc else None,
                    "column": loc.column if loc else None,
                    "kind": type(err).__name__,
                    "message": err.message,
                }
            )
            if not as_json:
                where = f"{origin}:{loc.line}:{loc.column}" if loc else origin
                click.echo(f"{where}: error: {err.message}", err=True)
                if loc:
                    click.echo(loc.render(), err=True)
        if not errors and not as_json:
            click.echo(f"{origin}: ok")
    if as_json:
        click.echo(json.dumps(records, indent=2))
    elif len(files) > 1 or failed:
        n_errors = sum(1 for r in records)
        click.echo(f"{len(files)} file(s) checked, {failed} with errors, {n_errors} error(s)", err=bool(failed))
    if failed:
        click.get_current_context().exit(ParseError.exit_code)


def register(group: click.Group) -> None:
    group.add_command(parse_cmd)
    group.add_command(check_cmd)
