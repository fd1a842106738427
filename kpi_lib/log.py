"""The package logger and the progress bar.

One named logger, ``kpi_report``; nothing here ever formats a secret.  :func:`redact`
replaces known secret values in any text before it reaches a log or an exception.
"""

from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm  # a terminal bar: tqdm.auto warns in JupyterLab without ipywidgets

logger = logging.getLogger("kpi_report")
T = TypeVar("T")
_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is then, not as it was when logging was set up
    (a caller that swaps stderr, as a test or an embedding program does, is never written to closed)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class sets it; the current stderr always wins
        pass


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr at INFO (DEBUG with ``verbose``), secrets masked."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(_RedactingFilter())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def progress(items: Iterable[T] | None = None, **kwargs) -> Iterator[T] | tqdm:
    """A tqdm progress bar that stays quiet when stderr is not a terminal."""
    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("leave", False)
    return tqdm(items, **kwargs)
