"""Debian's headless Chromium driven by Playwright (no browser download), and a page that
records every console error, page error and dialog, so a test can fail on any of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


def chromium() -> Iterator[Any]:
    """A running Chromium for the session; skips (or fails under REQUIRE_BROWSER=1) without one."""
    reason = missing_browser()
    if reason is not None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(f"browser tests need Chromium and Playwright: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page with what went wrong on it."""

    page: Any
    base: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    # (status, url) of failed API answers the test expects, e.g. 404 from /api/v1/funnels.
    expected: set[tuple[int, str]] = field(default_factory=set)

    def open(self, route: str = "") -> None:
        self.page.goto(f"{self.base}/{route}")
        self.ready()

    def ready(self, state: str = "ready") -> None:
        self.page.wait_for_selector(f"body[data-state='{state}']", timeout=20_000)

    def rerender(self, action: Any, state: str = "ready") -> None:
        """Run ``action`` (a click, a select) and wait for the render it starts to finish."""
        self.page.evaluate("document.body.dataset.state = 'stale'")
        action()
        self.ready(state)

    def chart(self, testid: str) -> dict[str, Any]:
        """The labels and dataset values a Chart.js chart was given."""
        found: dict[str, Any] = self.page.evaluate(
            """(id) => {
                const chart = Chart.getChart(document.querySelector(`canvas[data-testid="${id}"]`));
                return chart && {labels: chart.data.labels,
                    datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data}))};
            }""",
            testid,
        )
        assert found, f"no chart {testid}"
        return found

    def table(self, testid: str) -> list[dict[str, str]]:
        """A table's body rows as {data-key: shown text}."""
        rows: list[dict[str, str]] = self.page.evaluate(
            """(id) => [...document.querySelectorAll(`table[data-testid="${id}"] tbody tr`)]
                .map(tr => Object.fromEntries([...tr.cells].map(td => [td.dataset.key, td.textContent])))""",
            testid,
        )
        return rows

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert not self.dialogs, f"a dialog opened (script ran): {self.dialogs}"
        assert not self.errors, f"console errors: {self.errors}"


def watch(browser: Any, base: str, **context: Any) -> Watched:
    page = browser.new_context(viewport={"width": 1400, "height": 900}, **context).new_page()
    watched = Watched(page, base)

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url", "")
        if any(
            f"status of {status}" in msg.text and path in url for status, path in watched.expected
        ):
            return
        watched.errors.append(f"{msg.text} ({url})")

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))
    page.on("dialog", on_dialog)
    page.on("request", lambda request: watched.requests.append(request.url))
    return watched
