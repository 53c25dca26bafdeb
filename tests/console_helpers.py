"""Driving the operator console in Debian's headless Chromium with Playwright (the Python package
only: no browser download; ``apt-get install -y chromium``).

:func:`launch_chromium` fails (never skips) when the browser is missing. :class:`ConsolePage` wraps a
page with what every console test checks: no console errors or CSP violations, no uncaught
exceptions, no request to another origin and no API key in any URL; and it saves screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, Request, ViewportSize

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: A laptop screen.
VIEWPORT: ViewportSize = {"width": 1366, "height": 800}


def chromium_path() -> str:
    """Path of the Chromium binary; fails the test with install instructions if there is none."""
    path = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the console tests need Debian's browser "
            "(apt-get install -y chromium; or set CHROMIUM_PATH)",
            pytrace=False,
        )
    return path


async def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from the system, with background networking off."""
    return await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


@dataclass
class ConsolePage:
    """A console page and what went wrong on it."""

    page: Page
    base_url: str
    screenshots: Path
    api_key: str = ""
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def watch(self) -> None:
        """Record console errors, CSP violations, page errors and foreign requests."""
        origin = urlsplit(self.base_url)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))

        def on_request(request: Request) -> None:
            self.requests.append(request.url)
            url = urlsplit(request.url)
            if url.scheme in ("data", "blob", "about"):
                return
            if (url.scheme, url.netloc) != (origin.scheme, origin.netloc):
                self.problems.append(f"request to another origin: {request.url}")

        self.page.on("request", on_request)

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "error" and not _expected_http_error(text):
            self.problems.append(f"console error: {text}")
        elif "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.problems.append(f"CSP: {text}")

    async def shot(self, name: str) -> Path:
        """Save a full-page screenshot as NN-name.png."""
        path = self.screenshots / f"{len(self.shots) + 1:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def check(self) -> None:
        """Assert nothing went wrong and the key never travelled in a URL."""
        assert not self.problems, "\n".join(self.problems)
        if self.api_key:
            leaked = [u for u in self.requests if self.api_key in u]
            assert not leaked, f"the API key appeared in URLs: {leaked}"


def _expected_http_error(text: str) -> bool:
    # Chromium logs every 4xx/5xx fetch ("Failed to load resource: ... status of 400"); the tests
    # provoke refusals on purpose (validation, deleting an active CA), and assert on them in the page.
    return bool(
        re.match(r"Failed to load resource: the server responded with a status of (4\d\d|5\d\d)", text)
    )


async def storage(page: Page) -> dict[str, Any]:
    """``{"session": {...}, "local": {...}}`` of the page's origin."""
    result: dict[str, Any] = await page.evaluate(
        """() => ({
            session: Object.fromEntries(Object.entries(sessionStorage)),
            local: Object.fromEntries(Object.entries(localStorage)),
        })"""
    )
    return result


async def unlabelled_controls(page: Page) -> list[str]:
    """Form controls (in the page and its dialogs) without an accessible label."""
    result: list[str] = await page.evaluate(
        """() => Array.from(document.querySelectorAll('input, select, textarea'))
            .filter((el) => el.type !== 'hidden')
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !el.getAttribute('aria-labelledby'))
            .map((el) => el.id || el.outerHTML.slice(0, 80))"""
    )
    return result
