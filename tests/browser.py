"""Open pages in headless Chromium (Debian's package) through Playwright.

:func:`check_page` loads a file or URL, waits for it to settle and reports what a reader
would hit: console errors, page errors, JavaScript dialogs, images that did not load and
visible code cells.  A screenshot is written when asked for.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """Debian's chromium binary, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageReport:
    """What a headless browser saw on one page."""

    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    text: str = ""
    code_cells_visible: int = 0
    dialogs: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)


_PROBE = """() => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => (i.src || '').slice(0, 120));
  const visible = el => { const s = getComputedStyle(el); const r = el.getBoundingClientRect();
                          return s.display !== 'none' && s.visibility !== 'hidden' && r.width > 0 && r.height > 0; };
  const code = Array.from(document.querySelectorAll(
      '.jp-InputArea, .input_area, .jp-CodeMirrorEditor, .highlight-ipynb, div.input, .jp-InputPrompt'
  )).filter(visible).length;
  return {images: imgs.length, broken, code, text: document.body ? document.body.innerText : ''};
}"""


def check_page(target: str | Path, screenshot: str | Path | None = None, timeout_ms: int = 30000) -> PageReport:
    """Load ``target`` (a path or URL) in headless Chromium and report what happened."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed: apt-get install chromium (make test-deps does it as root)")
    url = Path(target).resolve().as_uri() if not str(target).startswith(("http://", "https://", "file:")) else str(target)
    report = PageReport()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: report.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: report.console_errors.append(str(e)))

            def on_dialog(dialog) -> None:
                report.dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("request", lambda r: report.external_requests.append(r.url)
                    if r.url.startswith(("http://", "https://")) and "127.0.0.1" not in r.url else None)
            page.goto(url, wait_until="load", timeout=timeout_ms)
            page.wait_for_timeout(200)
            probe = page.evaluate(_PROBE)
            report.images, report.broken_images = probe["images"], probe["broken"]
            report.code_cells_visible, report.text = probe["code"], probe["text"]
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return report


def save_email_page(html: str, images, folder: Path) -> Path:
    """Write a received email's HTML with its ``cid:`` images as files beside it, for :func:`check_page`."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(images):
        (folder / f"image{n}.png").write_bytes(image.get_content())
        html = html.replace(f"cid:{image['Content-ID'].strip('<>')}", f"image{n}.png")
    page = folder / "body.html"
    page.write_text(html, encoding="utf-8")
    return page


def open_details(target: str | Path, selector: str = "details", timeout_ms: int = 30000) -> list[dict]:
    """Load ``target`` with JavaScript switched off and click every ``selector`` element's summary.

    Returns, per element: its ``id``, whether its first list item was ``hidden_before`` the
    click and ``shown_after`` it, and the ``links`` (href) inside.
    """
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed: apt-get install chromium (make test-deps does it as root)")
    url = Path(target).resolve().as_uri() if not str(target).startswith(("http://", "https://", "file:")) else str(target)
    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900}).new_page()
            page.goto(url, wait_until="load", timeout=timeout_ms)
            found = page.locator(selector)
            for i in range(found.count()):
                element = found.nth(i)
                item = element.locator("li").first
                hidden = not item.is_visible()
                element.locator("summary").click()
                out.append({"id": element.get_attribute("id"), "hidden_before": hidden, "shown_after": item.is_visible(),
                            "links": [a.get_attribute("href") for a in element.locator("a").all()]})
        finally:
            browser.close()
    return out
