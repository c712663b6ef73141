"""The local hub's pages in a real browser: Debian's chromium driven by Playwright.

A demo adapter is evaluated and published to the hub by `hubkit publish` (the genuine
huggingface_hub client underneath); its page must show the card's results table, the
model-index values in the evaluation panel and the results chart, and every request the page
makes must go to 127.0.0.1. A README full of script must run none of it, even with the
page's Content-Security-Policy switched off. The card preview shows the same card."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from hubkit.hub.server import LocalHub

CHROMIUM = os.environ.get("HUBKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("HUBKIT_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
REPO = "demo-user/tiny-mistral-lora-full"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser

XSS_README = """---
tags: ["<img src=x onerror=window.__pwned=1>"]
model-index:
- name: x
  results:
  - dataset: {name: "<svg onload=window.__pwned=2>", type: x}
    metrics: [{type: acc, value: "<script>window.__pwned=3</script>"}]
    source: {name: src, url: "javascript:window.__pwned=4"}
---
# card <script>window.__pwned = 5</script>

<script>window.__pwned = 6</script>
<img src=x onerror="window.__pwned=7">
<a href="javascript:window.__pwned=8" id="js-link">click</a>
<details open ontoggle="window.__pwned=9"><summary>s</summary>d</details>
<svg><script>window.__pwned=10</script></svg>
<iframe srcdoc="<script>parent.__pwned=11</script>"></iframe>
<img src="https://evil.example/track.png">
</article></section></main><script>window.__pwned=12</script>

[md](javascript:window.__pwned=13)

```mermaid
graph TD
  a["<img src=x onerror=window.__pwned=14>"] --> b["</svg><script>window.__pwned=15</script>"]
```
"""


@pytest.fixture(scope="module")
def published(demo_world, tmp_path_factory):
    """The demo's lora-full adapter, evaluated (base and adapter, a few questions) and published
    to a local hub with its card, chart and run records."""
    from hubkit.eval import run_eval
    from hubkit.manifest import load_manifest
    from hubkit.publish import publish

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's chromium (`apt-get install chromium`) or set HUBKIT_CHROMIUM")
    tmp = tmp_path_factory.mktemp("hub-browser")
    root = tmp / "world"
    shutil.copytree(demo_world.paths.root, root, ignore=shutil.ignore_patterns("runs", "cards", ".hubkit"))
    data = yaml.safe_load((root / "hubkit.yaml").read_text())
    data["evals"]["demo"].update(strategies=["fp32-lora"], limit=8, include_base=True, artifacts=["lora-full"])
    (root / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    m = load_manifest(root / "hubkit.yaml")
    run_eval(m)
    with LocalHub(tmp / "hub") as hub:
        result = publish(m, artifact="lora-full", endpoint=hub.url)
        assert result.commits.get(REPO)
        yield hub, tmp


def browse(url: str, *, bypass_csp: bool = False, out: str | None = None, check=None):
    """Open `url`; returns (page facts from `check(page)`, every request URL, dialogs, errors)."""
    from playwright.sync_api import sync_playwright

    requests, dialogs, errors = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(bypass_csp=bypass_csp, viewport={"width": 1300, "height": 1000})
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        facts = check(page) if check else None
        if out:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / out), full_page=True)
        browser.close()
    return facts, requests, dialogs, errors


def offsite(requests: list[str]) -> list[str]:
    return [u for u in requests if urlparse(u).hostname != "127.0.0.1" and not u.startswith(("data:", "about:"))]


def model_index_values(hub: LocalHub) -> list[tuple[str, str]]:
    import urllib.request

    readme = urllib.request.urlopen(f"{hub.url}/{REPO}/resolve/main/README.md", timeout=30).read().decode()
    meta = yaml.safe_load(readme.split("---")[1])
    return [(str(metric["type"]), str(metric["value"])) for res in meta["model-index"][0]["results"] for metric in res["metrics"]]


def test_adapter_page_shows_results_table_model_index_and_chart(published):
    hub, _ = published
    expected = model_index_values(hub)
    assert expected, "the published card has no model-index"

    def check(page):
        card = page.locator("article.card")
        table = card.locator("table").first
        panel = page.locator("#evaluation-results")
        chart = card.locator("img[alt=results]")
        return {
            "title": page.title(),
            "table_rows": table.locator("tbody tr").all_inner_texts(),
            "table_head": table.locator("thead").inner_text(),
            "panel_rows": [[c.inner_text() for c in row.locator("td").all()] for row in panel.locator("tbody tr").all()],
            "chart_width": chart.evaluate("img => img.naturalWidth") if chart.count() else 0,
            "mermaid": page.locator("figure.mermaid svg rect").count(),
            "pills": page.locator("ul.pills").inner_text(),
            "model_tree": page.locator("section.model-tree").inner_text(),
        }

    facts, requests, dialogs, errors = browse(f"{hub.url}/{REPO}", out="hub-model-page.png", check=check)
    assert REPO in facts["title"]
    # the card's results table, with this adapter's row
    assert "acc" in facts["table_head"]
    assert any("this model" in row for row in facts["table_rows"]), facts["table_rows"]
    # the evaluation panel holds every model-index value: metric, value, few-shot 0, a source link
    panel = facts["panel_rows"]
    for metric, value in expected:
        assert any(row[1] == metric and row[2] == value and row[3] == "0" and row[4].startswith("hubkit eval") for row in panel), (metric, value, panel)
    assert facts["chart_width"] > 0, "results.png did not load"
    assert facts["mermaid"] >= 2  # the lineage, drawn without a script
    assert "peft" in facts["pills"] and "apache-2.0" in facts["pills"]
    assert "hubkit-demo/tiny-mistral" in facts["model_tree"] and "Adapter" in facts["model_tree"]
    assert not offsite(requests), offsite(requests)
    assert any(u.endswith("/results.png") for u in requests)
    assert not dialogs and not errors


def test_files_and_commits_pages(published):
    hub, _ = published

    def check(page):
        return page.locator("table.files tbody tr").all_inner_texts()

    rows, requests, _, errors = browse(f"{hub.url}/{REPO}/tree/main", check=check)
    weights = next(r for r in rows if "adapter_model.safetensors" in r)
    assert "LFS" in weights and ("kB" in weights or "MB" in weights)
    assert any(r.startswith("eval/") for r in rows)
    commits, requests2, _, errors2 = browse(f"{hub.url}/{REPO}/commits/main", check=lambda page: page.locator("table.commits tbody tr").all_inner_texts())
    assert len(commits) >= 2 and "initial commit" in commits[-1]
    assert not offsite(requests + requests2) and not errors and not errors2


def test_script_in_a_readme_never_runs(published):
    """Even with the Content-Security-Policy bypassed, nothing a README holds executes."""
    from huggingface_hub import HfApi

    from hubkit.publish import hub_session

    hub, _ = published
    with hub_session(hub.url):
        api = HfApi(endpoint=hub.url)
        api.create_repo("me/xss", exist_ok=True)
        api.upload_file(path_or_fileobj=XSS_README.encode(), path_in_repo="README.md", repo_id="me/xss")

    def check(page):
        return {
            "pwned": page.evaluate("() => window.__pwned === undefined ? null : window.__pwned"),
            "scripts": page.locator("script").count(),
            "handlers": page.evaluate("() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))"),
            "aside_outside_article": page.evaluate("() => !document.querySelector('aside.side').closest('article')"),
        }

    facts, requests, dialogs, errors = browse(f"{hub.url}/me/xss", bypass_csp=True, out="hub-xss-page.png", check=check)
    assert facts["pwned"] is None and facts["scripts"] == 0 and facts["handlers"] == [], facts
    assert facts["aside_outside_article"]
    assert not dialogs and not errors
    assert not offsite(requests), offsite(requests)


def test_card_preview_before_publishing(published):
    from hubkit.hub.pages import preview_server

    hub, tmp = published
    import urllib.request

    card = tmp / "card"
    card.mkdir()
    for name in ("README.md", "results.png"):
        (card / name).write_bytes(urllib.request.urlopen(f"{hub.url}/{REPO}/resolve/main/{name}", timeout=30).read())
    expected = model_index_values(hub)
    with preview_server(card) as srv:
        def check(page):
            return {
                "panel": page.locator("#evaluation-results").inner_text(),
                "chart_width": page.locator("article.card img[alt=results]").evaluate("img => img.naturalWidth"),
                "rows": page.locator("article.card table").first.locator("tbody tr").all_inner_texts(),
            }

        facts, requests, dialogs, errors = browse(srv.url, out="card-preview.png", check=check)
    for metric, value in expected:
        assert metric in facts["panel"] and value in facts["panel"]
    assert facts["chart_width"] > 0 and any("this model" in r for r in facts["rows"])
    assert not offsite(requests) and not dialogs and not errors
