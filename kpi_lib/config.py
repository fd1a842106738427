"""Parameters and environment, resolved once into validated settings.

Order of precedence: CLI flag, then params file, then environment, then default.  This is
the only module that reads ``os.environ``; notebooks receive everything as parameters.

A params file is a papermill parameter file (YAML).  Its top-level keys are the notebooks'
parameters (see :data:`NOTEBOOK_PARAMETERS`); the KPI settings live under ``kpi:`` and the
delivery settings under ``email:``::

    lang: ru
    week: last
    kpi:
      supervisors: [1001]
      targets: {csat_pct: 85}
    email:
      to: [head@example.ru]
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from .errors import ConfigError
from .periods import BusinessHours, load_timezone

#: The parameters every notebook declares in its ``parameters`` cell, with their defaults.
NOTEBOOK_PARAMETERS: dict[str, Any] = {
    "week": "last",
    "as_of": None,
    "lang": "en",
    "account": None,
    "data_dir": None,
    "kpi": {},
    "email": {},
}

LANGUAGES = ("en", "ru")

DEFAULT_GENERIC_TEXTS = (
    "позвонить", "перезвонить", "связаться", "написать", "напомнить", "задача", "новая задача",
    "call", "call back", "follow up", "contact",
)

@dataclass(frozen=True)
class KpiSettings:
    """Everything the KPI definitions let a team choose (kpi-definitions.md)."""

    supervisors: tuple[int, ...] | None = None
    managers: tuple[int, ...] | None = None
    csat_field: str | int = "CSAT"
    nps_field: str | int | None = None
    pipelines: tuple[int, ...] | None = None
    timezone: str | None = None
    fcr_window_days: int = 7
    business_hours: BusinessHours = field(default_factory=BusinessHours)
    supervisor_hourly_rate: float = 1500.0
    minutes_per_escalation_task: float = 10.0
    minutes_per_takeover: float = 30.0
    min_task_words: int = 3
    min_result_words: int = 2
    max_tasks_per_day: int = 25
    generic_task_texts: tuple[str, ...] = DEFAULT_GENERIC_TEXTS
    #: Targets given in params (figure key -> number, or None for the trailing median); the KPI
    #: registry (:mod:`kpi_lib.kpis.registry`) knows each figure's default and range and checks them.
    targets: Mapping[str, float | None] = field(default_factory=dict)
    trend_weeks: int = 12


@dataclass(frozen=True)
class EmailSettings:
    """Recipients and presentation of the weekly email (secrets come from SMTP_* instead)."""

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    base_url: str | None = None
    attach: str = "auto"  # auto | html | zip
    managers: bool = False  # `run --email` also mails each manager their card
    manager_addresses: Mapping[int, str] = field(default_factory=dict)  # user id -> address (over amoCRM's)
    skip_managers: tuple[int, ...] = ()
    manager_lang: Mapping[int, str] = field(default_factory=dict)  # user id -> en | ru (default: lang)


@dataclass(frozen=True)
class Settings:
    """One validated view of flags, params file, environment and defaults."""

    data_dir: Path
    account: str | None = None
    week: str = "last"
    as_of: str | None = None
    lang: str = "en"
    params_file: Path | None = None
    kpi: KpiSettings = field(default_factory=KpiSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    #: The ``kpi:`` mapping as given, passed on to every notebook.
    kpi_params: Mapping[str, Any] = field(default_factory=dict)

    def notebook_parameters(self) -> dict[str, Any]:
        """The parameters papermill passes to every notebook (never a secret)."""
        return {
            "week": self.week,
            "as_of": self.as_of,
            "lang": self.lang,
            "account": self.account,
            "data_dir": str(self.data_dir),
            "kpi": dict(self.kpi_params),
            "email": {},
        }


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _int_list(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _fail(where, f"expected a list of user or pipeline ids (integers), got {value!r}")
    return tuple(value)


def _number(value: Any, where: str, minimum: float = 0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise _fail(where, f"expected a number of {minimum:g} or more, got {value!r}")
    return float(value)


def _whole(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(where, f"expected a whole number of {minimum} or more, got {value!r}")
    return value


def _field_ref(value: Any, where: str) -> str | int | None:
    if value is None or (isinstance(value, (str, int)) and not isinstance(value, bool)):
        return value
    raise _fail(where, f"expected a custom field id or name, got {value!r}")


def _required_field_ref(value: Any, where: str) -> str | int:
    if value is None:
        raise _fail(where, "expected a custom field id or name, got None")
    return _field_ref(value, where)


def _timezone(value: Any, where: str) -> str | None:
    if value is not None:
        load_timezone(str(value))
    return value


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"expected a list of texts, got {value!r}")
    return tuple(value)


def _hhmm(value: Any, where: str) -> str:
    """``HH:MM`` from 00:00 to 24:00 (the end of the day), zero-padded."""
    parts = str(value).split(":")
    ok = len(parts) == 2 and all(p.isdigit() and len(p) <= 2 for p in parts)
    hours, minutes = (int(parts[0]), int(parts[1])) if ok else (0, 0)
    if not ok or minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise _fail(where, f"expected a time of day from '00:00' to '24:00', like '09:00' (quoted), got {value!r}")
    return f"{hours:02d}:{minutes:02d}"


def _business_hours(value: Any, where: str) -> BusinessHours:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected {{days: [1, 2, 3, 4, 5], start: '09:00', end: '18:00'}}, got {value!r}")
    unknown = set(value) - {"days", "start", "end"}
    if unknown:
        raise _fail(where, f"unknown key {sorted(unknown)[0]!r}: use days, start and end")
    days = value.get("days", [1, 2, 3, 4, 5])
    if not isinstance(days, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7
                                             for d in days):
        raise _fail(f"{where}.days", f"expected ISO weekdays 1 (Monday) to 7, got {days!r}")
    start = _hhmm(value.get("start", "09:00"), f"{where}.start")
    end = _hhmm(value.get("end", "18:00"), f"{where}.end")
    if end <= start:
        raise _fail(where, f"end {end} is not after start {start}: a window may not cross midnight")
    return BusinessHours(tuple(sorted(set(days))), start, end)


def _targets(value: Any, where: str) -> dict[str, Any]:
    """The mapping as given: :func:`kpi_lib.kpis.registry.check_targets` knows each figure's range."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(where, f"expected a mapping of KPI name to target, e.g. {{csat_pct: 85}}, got {value!r}")
    return dict(value)


def _at_least(check: Callable[..., Any], minimum: float) -> Callable[[Any, str], Any]:
    return lambda value, where: check(value, where, minimum)


#: How each ``kpi:`` setting is checked: ``check(value, where) -> the value KpiSettings holds``.
KPI_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "supervisors": _int_list,
    "managers": _int_list,
    "csat_field": _required_field_ref,
    "nps_field": _field_ref,
    "pipelines": _int_list,
    "timezone": _timezone,
    "fcr_window_days": _at_least(_whole, 1),
    "business_hours": _business_hours,
    "supervisor_hourly_rate": _at_least(_number, 0),
    "minutes_per_escalation_task": _at_least(_number, 0),
    "minutes_per_takeover": _at_least(_number, 0),
    "min_task_words": _at_least(_whole, 1),
    "min_result_words": _at_least(_whole, 0),
    "max_tasks_per_day": _at_least(_whole, 1),
    "generic_task_texts": _texts,
    "targets": _targets,
    "trend_weeks": _at_least(_whole, 1),
}


def parse_kpi_settings(raw: Mapping[str, Any] | None, where: str = "kpi") -> KpiSettings:
    """Validate the ``kpi:`` mapping of a params file, each setting by its entry in :data:`KPI_CHECKS`."""
    raw = dict(raw or {})
    for key in raw:
        if key not in KPI_CHECKS:
            raise _fail(f"{where}.{key}", f"unknown setting: use one of {', '.join(sorted(KPI_CHECKS))}")
    return KpiSettings(**{key: KPI_CHECKS[key](value, f"{where}.{key}") for key, value in raw.items()})


def parse_email_settings(raw: Mapping[str, Any] | None, where: str = "email") -> EmailSettings:
    """Validate the ``email:`` mapping of a params file."""
    raw = dict(raw or {})
    known = {f.name for f in fields(EmailSettings)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key not in known:
            raise _fail(at, f"unknown setting: use one of {', '.join(sorted(known))}")
        if key in ("to", "cc"):
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) and "@" in v for v in value):
                raise _fail(at, f"expected a list of email addresses, got {value!r}")
            out[key] = tuple(value)
        elif key == "base_url":
            if value is not None and not str(value).startswith(("http://", "https://")):
                raise _fail(at, f"expected an http(s) URL, got {value!r}")
            out[key] = value
        elif key == "attach":
            if value not in ("auto", "html", "zip"):
                raise _fail(at, f"expected auto, html or zip, got {value!r}")
            out[key] = value
        elif key == "managers":
            if not isinstance(value, bool):
                raise _fail(at, f"expected true or false, got {value!r}")
            out[key] = value
        elif key == "skip_managers":
            out[key] = _int_list(value, at) or ()
        elif key in ("manager_addresses", "manager_lang"):
            out[key] = _by_user(value, at, "address" if key == "manager_addresses" else "lang")
    return EmailSettings(**out)


def _by_user(value: Any, where: str, kind: str) -> dict[int, str]:
    """``{user_id: address}`` or ``{user_id: en | ru}``, keys as integers."""
    example = "{10400111: anna@example.ru}" if kind == "address" else "{10400111: ru}"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping of amoCRM user id to {kind}, e.g. {example}, got {value!r}")
    out = {}
    for user, item in value.items():
        if isinstance(user, bool) or not str(user).strip().isdigit():
            raise _fail(f"{where}.{user}", f"expected an amoCRM user id (a whole number) as the key, e.g. {example}")
        if kind == "address" and not (isinstance(item, str) and "@" in item):
            raise _fail(f"{where}.{user}", f"expected an email address, got {item!r}")
        if kind == "lang" and item not in LANGUAGES:
            raise _fail(f"{where}.{user}", f"expected one of {', '.join(LANGUAGES)}, got {item!r}")
        out[int(user)] = item
    return out


def read_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a params YAML file and check its top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist: pass --params with a file from params/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path}: expected a mapping at the top level")
    for key in data:
        if key not in NOTEBOOK_PARAMETERS:
            raise ConfigError(
                f"params file {path}: unknown key {key!r}: use one of {', '.join(NOTEBOOK_PARAMETERS)}"
                " (KPI settings go under 'kpi:')"
            )
    return data


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``KPI_DATA_DIR``, else the nearest ``data/`` beside a ``pyproject.toml`` above the cwd, else ``./data``."""
    env = os.environ if env is None else env
    if env.get("KPI_DATA_DIR"):
        return Path(env["KPI_DATA_DIR"]).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "kpi_lib").is_dir():
            return folder / "data"
    return here / "data"


def default_demo_dir() -> Path:
    """``demo/data`` beside the default ``data/``: the demo account never shares a folder with a synced one
    (``KPI_DATA_DIR`` names your account's folder, so it is not read here)."""
    return default_data_dir({}).parent / "demo" / "data"


def load_settings(
    params_file: str | os.PathLike | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve flags (``overrides``), params file, environment and defaults into Settings.

    ``overrides`` take the notebook parameter names (``week``, ``as_of``, ``lang``,
    ``account``, ``data_dir``, ``kpi``, ``email``); a value of None means "not given".
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = dict(NOTEBOOK_PARAMETERS)
    if params_file:
        values.update(read_params_file(params_file))
    for key, value in (overrides or {}).items():
        if key not in NOTEBOOK_PARAMETERS:
            raise ConfigError(f"unknown parameter {key!r}: use one of {', '.join(NOTEBOOK_PARAMETERS)}")
        if value is not None and value != {}:
            values[key] = value
    lang = str(values["lang"] or "en")
    if lang not in LANGUAGES:
        raise ConfigError(f"lang {lang!r} is not supported: use 'en' or 'ru'")
    data_dir = Path(values["data_dir"]).expanduser().resolve() if values["data_dir"] else default_data_dir(env)
    account = values["account"] or env.get("KPI_ACCOUNT") or None
    kpi = parse_kpi_settings(values["kpi"])
    settings = Settings(
        data_dir=data_dir,
        account=account,
        week=str(values["week"] or "last"),
        as_of=str(values["as_of"]) if values["as_of"] else None,
        lang=lang,
        params_file=Path(params_file).resolve() if params_file else None,
        kpi=kpi,
        email=parse_email_settings(values["email"]),
        kpi_params=dict(values["kpi"] or {}),
    )
    return settings


# --- environment: connection and delivery secrets -------------------------------------------

_SUBDOMAIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class AmoEnv:
    """amoCRM connection settings from the environment (secrets never printed)."""

    base_url: str | None
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None
    token_file: Path | None = None
    max_rps: float = 7.0


def check_max_rps(rps: float, name: str) -> float:
    """``rps`` if it is a rate amoCRM allows (above 0, at most 7 a second), else a ConfigError
    naming it as ``name`` (``"AMOCRM_MAX_RPS="``, ``"--max-rps "``)."""
    if not 0 < rps <= 7:
        raise ConfigError(f"{name}{rps:g} is out of range: amoCRM allows at most 7 requests per second; "
                          "use a value from 0.5 to 7")
    return rps


def amocrm_env(env: Mapping[str, str] | None = None, data_dir: Path | None = None) -> AmoEnv:
    """Read ``AMOCRM_*`` variables; the base URL from AMOCRM_BASE_URL or subdomain + domain."""
    env = os.environ if env is None else env
    base = env.get("AMOCRM_BASE_URL")
    sub = env.get("AMOCRM_SUBDOMAIN")
    domain = env.get("AMOCRM_DOMAIN", "amocrm.ru")
    if domain not in ("amocrm.ru", "amocrm.com", "kommo.com"):
        raise ConfigError(f"AMOCRM_DOMAIN={domain!r} is not supported: use amocrm.ru, amocrm.com or kommo.com")
    if sub and not _SUBDOMAIN_RE.match(sub):
        raise ConfigError(f"AMOCRM_SUBDOMAIN={sub!r} is not a plain subdomain: use only the first part of the "
                          f"address, e.g. AMOCRM_SUBDOMAIN=yourcompany for https://yourcompany.{domain}")
    if not base and sub:
        base = f"https://{sub}.{domain}"
    token_file = env.get("AMOCRM_TOKEN_FILE")
    if not token_file and data_dir is not None:
        token_file = str(Path(data_dir) / "amocrm_token.json")
    try:
        max_rps = float(env.get("AMOCRM_MAX_RPS", "7"))
    except ValueError as exc:
        raise ConfigError(f"AMOCRM_MAX_RPS={env.get('AMOCRM_MAX_RPS')!r} is not a number: use e.g. 5") from exc
    check_max_rps(max_rps, "AMOCRM_MAX_RPS=")
    return AmoEnv(
        base_url=base.rstrip("/") if base else None,
        token=env.get("AMOCRM_TOKEN") or None,
        client_id=env.get("AMOCRM_CLIENT_ID") or None,
        client_secret=env.get("AMOCRM_CLIENT_SECRET") or None,
        redirect_uri=env.get("AMOCRM_REDIRECT_URI") or None,
        token_file=Path(token_file) if token_file else None,
        max_rps=max_rps,
    )


@dataclass(frozen=True)
class SmtpEnv:
    """SMTP delivery settings from the environment (the password never printed)."""

    host: str | None
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    sender: str | None = None


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def smtp_env(env: Mapping[str, str] | None = None) -> SmtpEnv:
    """Read ``SMTP_*`` variables."""
    env = os.environ if env is None else env
    ssl, starttls = _flag(env, "SMTP_SSL"), _flag(env, "SMTP_STARTTLS")
    if ssl and starttls:
        raise ConfigError("SMTP_SSL and SMTP_STARTTLS are both set: choose one (465 uses SSL, 587 uses STARTTLS)")
    default_port = 465 if ssl else (587 if starttls else 25)
    try:
        port = int(env.get("SMTP_PORT") or default_port)
    except ValueError as exc:
        raise ConfigError(f"SMTP_PORT={env.get('SMTP_PORT')!r} is not a port number: use e.g. 587") from exc
    return SmtpEnv(
        host=env.get("SMTP_HOST") or None,
        port=port,
        user=env.get("SMTP_USER") or None,
        password=env.get("SMTP_PASSWORD") or None,
        starttls=starttls,
        ssl=ssl,
        sender=env.get("SMTP_FROM") or env.get("SMTP_USER") or None,
    )
