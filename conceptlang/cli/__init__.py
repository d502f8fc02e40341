"""The ``conceptlang`` command line: a click group with one module per area.

Each command module defines ``register(group)``. Errors from the library (``ConceptLangError``)
are printed without a traceback; parse and usage errors exit with 2, the rest with 1.
"""

from __future__ import annotations

import importlib
import sys

import click

from conceptlang import __version__
from conceptlang.errors import ConceptLangError

COMMAND_MODULES = ("syntax_cmds", "sample_cmds", "data_cmds", "judge_cmds", "model_cmds", "experiment_cmds")


class ConceptLangGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConceptLangError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


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
