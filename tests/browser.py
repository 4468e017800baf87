"""Debian's Chromium driven by Playwright (never a downloaded browser)."""
from __future__ import annotations

import contextlib
import os
import tempfile

CHROMIUM = os.environ.get("NEBULAHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@contextlib.contextmanager
def chromium_page(viewport=(1280, 900)):
    """A fresh headless Chromium page (own profile dir), closed afterwards."""
    import pytest
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True,
        )
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            yield page
        finally:
            ctx.close()


def hub_login(page, hub_url: str, username: str, password: str) -> None:
    """Log in at the hub's login page as a person would."""
    page.goto(f"{hub_url}/hub/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("#login_submit")


def start_with_profile(page, slug: str) -> None:
    """On the spawn form: pick a profile and press Start."""
    page.wait_for_selector(f"input[name=profile][value={slug}]", timeout=30_000)
    page.check(f"input[name=profile][value={slug}]")
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")


def stop_from_hub_home(page, hub_url: str) -> None:
    """"Stop My Server" on the hub's home page, then wait for the Start button."""
    page.goto(f"{hub_url}/hub/home")
    page.click("#stop")
    page.wait_for_selector("#start", state="visible", timeout=60_000)
