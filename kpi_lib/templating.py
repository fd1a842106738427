"""The one Jinja2 environment of every template in ``kpi_lib/templates``: the report sections,
the error and index pages, and the email (HTML and plain text).

HTML templates (``.html``, ``.j2``) are autoescaped, so a name or text from the CRM always
shows as text; the plain-text email is not.  ``StrictUndefined``: a template that names a
value nobody passed raises instead of rendering it as empty.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).with_name("templates")


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The environment (built once): autoescape for HTML, strict about undefined values."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(enabled_extensions=("html", "j2"), default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["css"] = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    env.globals["page_css"] = (TEMPLATES / "page.css").read_text(encoding="utf-8")
    return env


def render(template: str, **values: Any) -> str:
    """Render a template of ``kpi_lib/templates`` (HTML values escaped unless marked safe)."""
    return environment().get_template(template).render(**values)
