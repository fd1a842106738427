"""What the reports say about a week's move: the change, its arrow and the driver sentence.

One rule for every arrow (pages, index, email): the arrow is the sign of the change against
the previous week *as displayed* — ▲ when the change, rounded as the figure is shown, is above
zero, ▼ when below, → when it rounds to zero, · when a week has no figure.  Its colour says
whether that move is towards the target's direction (good) or away from it (bad).  So an arrow
never disagrees with the number printed beside it.

:func:`describe_move` turns a §11 record of :func:`kpi_lib.kpis.compute_moves` into one
sentence in the report language: the change of the team figure and the two or three
managers with the largest effects, each with the part (rate or mix) that carries it — or,
when the change is inside the week's noise limit, a sentence saying so instead.
"""

from __future__ import annotations

from typing import Any

from . import i18n

MINUS = "\u2212"
#: Digits a change is rounded to for display, by the figure's kind (see :data:`i18n.KINDS`).
_DIGITS = {"pct": 1, "money": 0, "minutes": 1, "number0": 0, "number1": 1, "number2": 2}
#: At most this many managers are named, and only those with at least this share of the largest effect.
NAMED, NAMED_SHARE = 3, 0.25


def digits(key: str) -> int:
    return _DIGITS.get(i18n.KINDS.get(key, "count"), 0)


def rounded(key: str, value: float | None) -> float | None:
    """``value`` as the reports display it (None stays None)."""
    return None if i18n.is_missing(value) else round(float(value), digits(key)) + 0.0


def format_change(key: str, change: float | None, lang: str, currency: str | None = "RUB",
                  signed: bool = True) -> str:
    """``+2.1 pp``, ``−1,234 RUB``, ``+0.4`` (``signed=False``: the size only)."""
    if i18n.is_missing(change):
        return i18n.text("no_data", lang)
    shown = rounded(key, change)
    size = abs(shown)
    kind = i18n.KINDS.get(key, "count")
    if kind == "pct":
        text = i18n.format_number(size, lang, 1) + i18n.NBSP + i18n.text("unit_pp", lang)
    else:
        text = i18n.format_value(key, size, lang, currency)
    if not signed or shown == 0:
        return text
    return ("+" if shown > 0 else MINUS) + text


def change_arrow(key: str, value: float | None, previous: float | None, direction: str) -> tuple[str, str]:
    """The arrow and class (good, bad, flat, none) of a move, by the rule of the module docstring."""
    if i18n.is_missing(value) or i18n.is_missing(previous):
        return "·", "none"
    shown = rounded(key, float(value) - float(previous))
    if shown == 0:
        return "→", "flat"
    good = shown > 0 if direction == ">=" else shown < 0
    return ("▲" if shown > 0 else "▼"), ("good" if good else "bad")


def named_managers(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The managers whose effects (rate + mix) are largest in size: two or three of them."""
    rows = [m for m in record["managers"] if m["rate_effect"] is not None]
    rows = sorted(rows, key=lambda m: abs(m["rate_effect"] + m["mix_effect"]), reverse=True)
    rows = [m for m in rows if rounded(record["key"], m["rate_effect"] + m["mix_effect"]) != 0]
    if not rows:
        return []
    top = abs(rows[0]["rate_effect"] + rows[0]["mix_effect"])
    return [m for i, m in enumerate(rows[:NAMED]) if i < 2 or abs(m["rate_effect"] + m["mix_effect"]) >= NAMED_SHARE * top]


def describe_move(record: dict[str, Any], block: str, names: dict[str, str], lang: str,
                  currency: str | None = "RUB") -> str:
    """One sentence on why the team figure moved (see the module docstring).

    Parameters
    ----------
    record : dict
        One block of :func:`kpi_lib.kpis.compute_moves`.
    names : dict
        Display names by user id string.
    """
    key = record["key"]
    t = lambda string, **kw: i18n.text(f"move.{string}", lang, **kw)  # noqa: E731
    fmt = lambda value: i18n.format_value(key, value, lang, currency)  # noqa: E731
    label = i18n.label(key, lang)
    if record["value"] is None:
        return t("no_value", label=label)
    if record["change"] is None:
        return t("no_previous", label=label, value=fmt(record["value"]))
    values = {"label": label, "value": fmt(record["value"]),
              "size": format_change(key, record["change"], lang, currency, signed=False)}
    shown = rounded(key, record["change"])
    if shown == 0:
        return t("unchanged", **values)
    verb = "rose" if shown > 0 else "fell"
    limit = record.get("limit")
    if limit is None or abs(record["change"]) <= limit:
        n = i18n.format_number(record.get("n"), lang)
        spread = format_change(key, limit, lang, currency, signed=False) if limit is not None else None
        return t(f"{verb}_noise" if spread else f"{verb}_few", n=n, limit=spread, **values)
    noun = i18n.text(f"move.noun.{block}", lang)
    parts = []
    for m in named_managers(record):
        total = m["rate_effect"] + m["mix_effect"]
        effect = format_change(key, total, lang, currency)
        name = names.get(str(m["manager"]), str(m["manager"]))
        if abs(m["rate_effect"]) >= abs(m["mix_effect"]):
            rate_verb = "rate_rose" if m["rate"] > m["previous_rate"] else "rate_fell"
            why = t(rate_verb, before=fmt(m["previous_rate"]), now=fmt(m["rate"]),
                    n=i18n.format_number(m["n"], lang))
        else:
            more = m["share"] > m["previous_share"]
            why = t("mix_more" if more else "mix_less", noun=noun, before=i18n.format_pct(100 * m["previous_share"], lang, 0),
                    now=i18n.format_pct(100 * m["share"], lang, 0))
        parts.append(t("part", name=name, effect=effect, why=why))
    other = record.get("other")
    if other is not None and rounded(key, other) != 0 and parts:
        smallest = min(abs(m["rate_effect"] + m["mix_effect"]) for m in named_managers(record))
        if abs(other) >= NAMED_SHARE * smallest:
            parts.append(t("other", effect=format_change(key, other, lang, currency)))
    return t(verb, drivers=", ".join(parts), **values)
