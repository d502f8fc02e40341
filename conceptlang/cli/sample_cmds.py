"""Commands of this area; filled in by its issue."""

import click


def register(group: click.Group) -> None:
    pass
