"""The ``robusthash`` command line. Thin: parse, call the library, format.

One module per command group; this one makes the root ``app`` and registers every
command on it, in the order ``robusthash --help`` lists them. The modules import the
library inside their commands, so that ``robusthash hash`` starts quickly.
"""

from __future__ import annotations

import typer

from .. import __version__
from .attack import attack, attack_adv, attacks_command
from .bench import bench, demo
from .common import HELP_MARKUP, out
from .db import db_app
from .explain import explain
from .hash import compare, hash_command, methods
from .serve import serve
from .train import export_model, train_app

app = typer.Typer(
    help="Identify images by robust hashes: hash and compare, register originals and search them, evaluate and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)
app.command("methods")(methods)
app.command("hash")(hash_command)
app.command("compare")(compare)
app.command("explain")(explain)
app.command("attack")(attack)
app.command("attack-adv")(attack_adv)
app.command("attacks")(attacks_command)
app.command("demo")(demo)
app.command("bench")(bench)
app.add_typer(db_app, name="db")
app.command("serve")(serve)
app.add_typer(train_app, name="train")
app.command("export")(export_model)


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"robusthash {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version."),
):
    """robusthash: register original images, then recognise their copies."""


def main() -> None:
    app()
