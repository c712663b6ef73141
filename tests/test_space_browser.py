"""The Space in a real browser: Debian's chromium driven by Playwright against the app served the
way `hubkit space serve` serves it (a child process on loopback)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from hubkit.manifest import load_manifest
from hubkit.space_build import build_space, serve_space

CHROMIUM = os.environ.get("HUBKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("HUBKIT_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_world, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's chromium (`apt-get install chromium`; .ci/run does) or set HUBKIT_CHROMIUM")
    folder = build_space(load_manifest(demo_world.paths.manifest), tmp_path_factory.mktemp("space") / "space", local=True).out
    s = serve_space(folder, env={"HF_HUB_OFFLINE": "1"})
    yield s
    s.stop()


def test_page_runs_a_comparison_in_every_column(served):
    from playwright.sync_api import sync_playwright

    offsite, console_errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: offsite.append(r.url) if urlparse(r.url).hostname not in ("127.0.0.1", "localhost") and not r.url.startswith(("data:", "blob:")) else None)
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(served.url, wait_until="load")
        page.wait_for_selector(".hubkit-out textarea", timeout=60_000)

        columns = page.locator(".hubkit-out textarea")
        assert columns.count() == 3  # base + lora-full + lora-half
        # the first example prompt (a fact both adapters learned), then Generate
        page.locator("#prompt textarea").fill("Question: What is the colour of the flag of Belbel?\nAnswer:")
        page.locator("#generate").click()
        for i in range(3):
            page.wait_for_function(f"document.querySelector('#out-{i} textarea') && document.querySelector('#out-{i} textarea').value.trim().length > 0", timeout=60_000)
        page.wait_for_function("document.querySelectorAll('[id^=stats-]').length === 3 && [...document.querySelectorAll('[id^=stats-]')].every(e => e.innerText.includes('done'))", timeout=60_000)
        texts = [columns.nth(i).input_value() for i in range(3)]
        assert all(t.strip() for t in texts), texts

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "space-generate.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert not offsite, f"the page reached off loopback: {offsite[:5]}"
    assert not console_errors, console_errors
