"""The `pyreport` console script."""

from __future__ import annotations

import json

import click

from . import __version__, report


@click.command()
@click.version_option(__version__)
@click.argument("text", nargs=-1)
def main(text: tuple[str, ...]) -> None:
    """Print word statistics for TEXT as JSON."""
    click.echo(json.dumps(report(" ".join(text))))
