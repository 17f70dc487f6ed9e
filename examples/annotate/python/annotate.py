"""A click command line: Rust passes its parameters as `--key value` options.

Replies with what it received and the number of words of `--text`, so the Rust side can
check that every parameter arrived intact.
"""
from __future__ import annotations

import click

import pybundle


@click.command()
@click.option("--text", default="", help="Text whose words are counted.")
@click.option("--label", default="", help="A label echoed back.")
@click.option("--lang", default="en", help="Language of the text.")
def main(text: str, label: str, lang: str) -> None:
    pybundle.reply(
        {
            "params": {"text": text, "label": label, "lang": lang},
            "words": len(text.split()),
            "click": click.__version__,
        }
    )


main(standalone_mode=True)
