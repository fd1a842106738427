"""One Jinja2 environment for sections, pages, index and email: strict and escaping HTML only;
and the email's sentences in both languages."""

from __future__ import annotations

import re

import jinja2
import pytest

from kpi_lib.mail import TEXTS
from kpi_lib.templating import TEMPLATES, environment, render


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.iterdir()
                                            if p.suffix in (".j2", ".html", ".txt")
                                            and p.name != "nbconvert_report.html.j2"))
def test_a_value_nobody_passed_is_an_error_in_every_template(template):
    with pytest.raises(jinja2.UndefinedError):
        render(template)


def test_html_is_escaped_and_plain_text_is_not():
    env = environment()
    evil = "<b>Evil</b> & Co"
    assert env.from_string("{{ x }}").render(x=evil) == "&lt;b&gt;Evil&lt;/b&gt; &amp; Co"
    assert env.get_template("report_chart.html.j2").render(title=evil, src=None, alt="a", empty="none").count(
        "&lt;b&gt;Evil") == 1
    assert env.autoescape("email.html") and env.autoescape("index_week.html.j2")
    assert not env.autoescape("email.txt")


def test_every_email_string_exists_in_both_languages_with_the_same_placeholders():
    fields = re.compile(r"{(\w+)}")
    assert set(TEXTS) == {"en", "ru"}
    assert set(TEXTS["en"]) == set(TEXTS["ru"]), set(TEXTS["en"]) ^ set(TEXTS["ru"])
    for key, english in TEXTS["en"].items():
        russian = TEXTS["ru"][key]
        if isinstance(english, str):
            assert english.strip() and russian.strip(), key
            assert set(fields.findall(english)) == set(fields.findall(russian)), key
        else:  # plural forms and other nested entries
            assert type(english) is type(russian), key


def test_the_headline_counts_targets_in_each_language():
    from kpi_lib.mail import targets_headline

    assert [targets_headline(1, n, "en") for n in (1, 2, 21)] == ["1 of 1 target met", "1 of 2 targets met",
                                                                   "1 of 21 targets met"]
    assert [targets_headline(1, n, "ru") for n in (1, 2, 11, 21)] == [
        "выполнено 1 из 1 цели", "выполнено 1 из 2 целей", "выполнено 1 из 11 целей", "выполнено 1 из 21 цели"]
