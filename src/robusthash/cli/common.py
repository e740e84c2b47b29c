"""What every command group shares: the consoles, output formats, options, progress bars,
the image-file scan and ``needs_extra`` for the optional dependencies.

Start-up time matters (``robusthash hash`` runs in scripts, once per file): nothing here
imports more than typer at module level (rich's console is made on first use); the
library is imported inside the functions that use it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from contextlib import ExitStack, contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

# Markdown, not Rich markup, for every command group: help text has brackets (pip install
# 'robusthash[train]', [env: ROBUSTHASH_DB]) that Rich would take for style tags, and
# docstrings wrapped at 88 columns reflow.
HELP_MARKUP = "markdown"

T = TypeVar("T")
R = TypeVar("R")


class LazyConsole:
    """A rich Console made on first use. Importing rich's console costs ~20 ms, which
    ``robusthash hash`` writing plain lines to a pipe never needs: ``file`` and
    ``is_terminal`` answer without it."""

    def __init__(self, stderr: bool = False, width_when_piped: int | None = None):
        self.stderr = stderr
        self.width_when_piped = width_when_piped
        self._console: Console | None = None

    @property
    def file(self):
        stream = sys.stderr if self.stderr else sys.stdout
        return getattr(stream, "rich_proxied_file", stream)  # past a live display, as rich's own

    @property
    def is_terminal(self) -> bool:
        if self._console is None and not _isatty(self.file) and not any(
                os.environ.get(v) for v in ("FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE")):
            return False  # what rich would say, without making the console
        return self.rich.is_terminal

    @property
    def rich(self) -> Console:
        if self._console is None:
            from rich.console import Console

            width = None if self.width_when_piped is None or _isatty(self.file) else self.width_when_piped
            self._console = Console(stderr=self.stderr, highlight=False, soft_wrap=True, width=width)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.rich, name)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


# Tables piped to a file or pager get a comfortable width instead of Rich's 80 columns.
out = LazyConsole(width_when_piped=140)
err = LazyConsole(stderr=True)


class Format(str, Enum):
    text = "text"
    jsonl = "jsonl"


def _method_names(spec: str, param_hint: str = "--methods") -> list[str]:
    """The comma-separated method names of an option, each checked against the registry."""
    from ..hashing import available_methods, get_hasher

    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in available_methods() and "=" not in name]
    if unknown:
        raise typer.BadParameter(f"unknown method {', '.join(map(repr, unknown))}; "
                                 f"available: {', '.join(available_methods())}, or NAME=PATH.onnx for an "
                                 f"exported model", param_hint=param_hint)
    for name in names:
        if "=" in name:  # an exported model: check it loads before any work starts
            try:
                get_hasher(name)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint=param_hint) from None
    return names


def _methods(spec: str) -> list:
    from ..hashing import get_hasher

    return [get_hasher(name) for name in _method_names(spec, "--method")]


class _NoProgress:
    """What :func:`_progress` gives when no bar is shown: the calls of a rich Progress,
    doing nothing (and without importing rich's live display)."""

    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, **fields) -> int:
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        return None

    def update(self, task: int, **fields) -> None:
        return None


def _progress(enabled: bool) -> "Progress | _NoProgress":
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err.rich,
        transient=True,
    )


DASK_OPTION = typer.Option(
    None, "--dask", help="hash on a Dask cluster: 'local' starts one on this machine, or a scheduler "
    "address such as tcp://scheduler:8786 (needs robusthash[distributed]; docs/distributed.md)",
)
DASK_WORKERS_OPTION = typer.Option(None, "--dask-workers", min=1,
                                   help="worker processes of --dask local (default: one per core)")


@contextmanager
def _cluster(address: Optional[str], workers: Optional[int]):
    """The executor --dask names (None without it); connection problems end the command cleanly."""
    if address is None:
        yield None
        return
    needs_extra("distributed", "dask.distributed", what="--dask")
    from ..cluster import ClusterConfig, dask_executor

    try:
        config = ClusterConfig(address, workers)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dask") from None
    with ExitStack() as stack:
        try:
            executor = stack.enter_context(dask_executor(config))
        except RuntimeError as exc:  # Dask missing, or no scheduler at the address
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None
        yield executor


def _image_files(paths, recursive: bool = True) -> list[Path]:
    """The image files under ``paths``; every file a folder scan skips is reported on
    stderr (in full where it is an image this machine cannot read, else counted)."""
    from ..files import scan_images

    scan = scan_images(paths, recursive=recursive)
    unreadable = scan.unreadable_images
    for path, why in unreadable:
        err.print(f"skipped {path}: {why}", markup=False)
    others = len(scan.skipped) - len(unreadable)
    if others:
        err.print(f"skipped {others} file(s) that are not images", markup=False)
    return scan.files


def ordered_map(fn: Callable[[T], R], items: Sequence[T], threads: int) -> Iterator[R]:
    """``map(fn, items)`` on ``threads`` threads, results in the order of ``items``, with
    only a few items per thread in flight (so a long list is not held decoded at once)."""
    if threads <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        window: deque = deque()
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= 4 * threads:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _emit(fmt: Format, record: dict, text: str) -> None:
    if fmt is Format.jsonl:
        out.file.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        out.print(text, markup=False)


def _fraction(text: str, name: str) -> float:
    """'8/255' or '0.5' → a number, for budgets quoted in 8-bit levels."""
    try:
        top, _, bottom = text.partition("/")
        value = float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise typer.BadParameter(f"{text!r} is not a number or a fraction such as 8/255", param_hint=name) from None
    if value <= 0:
        raise typer.BadParameter(f"{text!r} must be > 0", param_hint=name)
    return value



def needs_extra(extra: str, *modules: str, what: str) -> None:
    """Import the third-party ``modules`` that ``what`` (a command, an option, a kind of
    database) needs; where one is missing, say in one line which extra of robusthash
    installs it and end the command with exit code 1."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            err.print(f"error: {what} needs the {extra} extra ({exc}): pip install 'robusthash[{extra}]'",
                      markup=False)
            raise typer.Exit(1) from None
