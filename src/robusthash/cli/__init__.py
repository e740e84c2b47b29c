"""The ``robusthash`` command line. Thin: parse, call the library, format.

One module per command group; :func:`build_app` makes the root app and registers the
commands on it, in the order ``robusthash --help`` lists them. The modules import the
library inside their commands, and :func:`main` imports only the module of the command
it is given, so that ``robusthash hash`` starts quickly (benchmarks/startup.py).
"""

from __future__ import annotations

import importlib
import sys

import typer

from .. import __version__
from .common import HELP_MARKUP, out

# (command, module, attribute, whether it is a group of subcommands), in --help order.
COMMANDS = [
    ("methods", "hash", "methods", False),
    ("hash", "hash", "hash_command", False),
    ("compare", "hash", "compare", False),
    ("explain", "explain", "explain", False),
    ("attack", "attack", "attack", False),
    ("attack-adv", "attack", "attack_adv", False),
    ("attacks", "attack", "attacks_command", False),
    ("demo", "bench", "demo", False),
    ("bench", "bench", "bench", False),
    ("db", "db", "db_app", True),
    ("serve", "serve", "serve", False),
    ("train", "train", "train_app", True),
    ("export", "train", "export_model", False),
]


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"robusthash {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version."),
):
    """robusthash: register original images, then recognise their copies."""


def build_app(only: str | None = None) -> typer.Typer:
    """The root app with every command, or with the command ``only`` alone (which parses,
    helps and fails exactly as it does among the others)."""
    app = typer.Typer(
        help="Identify images by robust hashes: hash and compare, register originals and search them, evaluate and serve.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=HELP_MARKUP,
    )
    for name, module, attribute, group in COMMANDS:
        if only is None or name == only:
            target = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            if group:
                app.add_typer(target, name=name)
            else:
                app.command(name)(target)
    app.callback()(_root)
    return app


def __getattr__(name: str):
    if name == "app":  # the whole app, for callers that import it (the tests' CliRunner)
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    given = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        build_app(given if given in {name for name, *_ in COMMANDS} else None)()
    except Exception as exc:  # a database that cannot be used is an error message, not a traceback
        from ..db import StoreUnavailable

        if not isinstance(exc, StoreUnavailable):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
