"""Errors raised by kpi_lib.

Every error derives from :class:`KpiError`; its message names the value, the context and
the fix, so the CLI can print it as is and exit non-zero.  Subclasses carry their data as
attributes for callers that want to react to them.

Tree::

    KpiError
    ├── ConfigError          bad params file, flag or environment variable
    ├── StoreError           the DuckDB store is missing, locked or damaged
    ├── ApiError             amoCRM answered with an error (status, detail)
    │   ├── AuthError        401 after a refresh, missing or revoked token
    │   ├── BlockedError     403: account blocked for exceeding the rate limit
    │   └── PaymentError     402: subscription expired
    ├── ReportError          a notebook failed or a report could not be written
    ├── MailError            SMTP delivery failed after retries
    ├── DiskFullError        no space left on the device of a path (exit 2)
    └── LockBusyError        another run holds the lock (exit 75, as ``flock -n``)
"""

from __future__ import annotations

from collections.abc import Sequence


class KpiError(Exception):
    """Base of every error kpi_lib raises on purpose."""

    exit_code = 2


class ConfigError(KpiError):
    """A parameter, flag or environment variable is missing or wrong."""


class StoreError(KpiError):
    """The store cannot be opened, read or written."""


class ApiError(KpiError):
    """amoCRM answered with an error.

    Parameters
    ----------
    message : str
        What happened and what to do.
    status : int, optional
        HTTP status code.
    detail : str, optional
        The ``detail`` of the server's problem+json body, if any.
    """

    def __init__(self, message: str, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class AuthError(ApiError):
    """The token is missing, expired or revoked and could not be refreshed."""


class BlockedError(ApiError):
    """amoCRM blocked the account (HTTP 403) after rate-limit abuse."""


class PaymentError(ApiError):
    """The amoCRM subscription has expired (HTTP 402)."""


class ReportError(KpiError):
    """A notebook failed or a report could not be written."""

    exit_code = 1


class MailError(KpiError):
    """An email could not be delivered.

    Parameters
    ----------
    message : str
        What happened and what to do.
    refused : bool
        True when the server refused the recipients themselves (other emails may still go).
    unclear : bool
        True when the message went out and the server's reply never came: it may have arrived.
    lines : sequence of str
        What the send had to tell before it stopped (the command line prints these first).
    """

    def __init__(self, message: str, refused: bool = False, unclear: bool = False, lines: Sequence[str] = ()):
        super().__init__(message)
        self.refused = refused
        self.unclear = unclear
        self.lines = list(lines)


class DiskFullError(KpiError):
    """No space left on the device that holds ``path``.

    Parameters
    ----------
    path : str or path
        The file or folder that could not be written.
    """

    def __init__(self, path):
        super().__init__(f"no space left on the device of {path}: free some space there, then run again "
                         "(the previous reports are kept as they were)")
        self.path = str(path)


class LockBusyError(KpiError):
    """Another process holds the lock, and waiting for it was not asked for or timed out."""

    exit_code = 75
