"""The ``conceptlang`` command line: a click group with one module per area.

Each command module defines ``register(group)``. Errors from the library (``ConceptLangError``)
are printed without a traceback; parse and usage errors exit with 2, the rest with 1. A file
system error (``OSError``) or running out of memory is reported the same way, with exit 1.
"""

from __future__ import annotations

import importlib
import re
import sys

import click

from conceptlang import __version__
from conceptlang.errors import ConceptLangError

COMMAND_MODULES = ("syntax_cmds", "sample_cmds", "data_cmds", "judge_cmds", "model_cmds", "experiment_cmds")


class ConceptLangGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # A real command line cannot hold a NUL (argv entries are C strings); one passed in from
        # Python would reach os functions as "embedded null byte".
        for arg in args:
            if "\x00" in arg:
                raise click.UsageError(f"the argument {arg!r} contains a NUL character", ctx)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as err:
            # `sample "-1 * red & circle"`: a word that starts with '-' is read as an option
            if re.fullmatch(r"-[\d.].*", err.option_name or ""):
                err.message = (f"no such option {err.option_name!r}: an argument that starts with '-' is read as an "
                               "option; to begin an expression with a negative weight, wrap it in parentheses "
                               "(\"(-1 * red) & circle\") or put -- after the options and before it "
                               "(conceptlang sample -n 4 -- \"-1 * red & circle\")")
            raise
        except ConceptLangError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except OSError as err:  # the file system refused (disk full, permissions changed mid-run...)
            where = f" ({err.filename})" if err.filename else ""
            click.echo(f"error: {err.strerror or err}{where}", err=True)
            ctx.exit(1)
        except MemoryError:
            click.echo("error: out of memory; try a smaller -n or --batch-size", err=True)
            ctx.exit(1)


@click.group(cls=ConceptLangGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="conceptlang")
def main() -> None:
    """Compositional visual generation with energy-based models.

    Write a concept expression such as "(male & smiling) | ~black_hair" and sample images from
    the composed energy of the shipped concept models.
    """


for _name in COMMAND_MODULES:
    importlib.import_module(f"conceptlang.cli.{_name}").register(main)


def run() -> None:  # console-script entry point
    sys.exit(main())
