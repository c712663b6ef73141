"""The local hub's web pages and card previews, without a browser: what the HTML holds, that
everything a README says is escaped or vetted, and that the API keeps answering beside them.
(tests/test_hub_browser.py looks at the same pages in Chromium.)"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest

from hubkit.hub.pages import mermaid_html, preview_server, render_card_html, render_markdown, split_front_matter, Links
from hubkit.hub.server import LocalHub

CARD = """---
license: apache-2.0
base_model: hubkit-demo/tiny-mistral
base_model_relation: adapter
datasets:
- hubkit-demo/belbel-facts
library_name: peft
pipeline_tag: text-generation
tags:
- hubkit
- lora
model-index:
- name: me/tiny-lora
  results:
  - task:
      type: text-generation
    dataset:
      name: belbel
      type: hubkit-demo/belbel-facts
      split: test
      args:
        num_fewshot: '0'
    metrics:
    - type: acc
      value: 0.8125
      name: acc
    source:
      name: hubkit eval (fp32-lora, run 20261129-abc)
      url: https://huggingface.co/me/tiny-lora/tree/main/eval/20261129-abc
---
# tiny-lora

| model | acc | source |
|---|---|---|
| base | 0.2500 | reproduced |
| **this model** | 0.8125 ± 0.0312 | reproduced |

![results](results.png)

```mermaid
graph TD
  s0["pretrained<br/>hubkit-demo/tiny-mistral"]
  s1["lora<br/><i>LoRA on facts</i>"]
  s0 --> s1
  style s1 stroke-width:3px
```

```python
print("<b>not bold</b>")
```
"""

# Every way a README could try to run script, load from elsewhere or break out of the card.
XSS = """---
license: "<script>window.__pwned=1</script>"
tags: ["<img src=x onerror=alert(1)>"]
model-index:
- name: x
  results:
  - dataset: {name: "<svg onload=alert(1)>", type: "<b>x</b>"}
    metrics: [{type: acc, value: "<script>alert(1)</script>"}]
    source: {name: "src", url: "javascript:alert(1)"}
---
# card <script>alert(1)</script>

<script>window.__pwned = 1</script>
<img src=x onerror="window.__pwned=1">
<img src="https://evil.example/track.png">
<iframe src="https://evil.example"></iframe>
<a href="javascript:alert(1)">click</a>
<a href="JaVaScRiPt:alert(1)">click2</a>
<div onmouseover="alert(1)" style="background:url(https://evil.example/x)">hover</div>
<style>body{background:url(https://evil.example/css)}</style>
<svg><script>alert(1)</script></svg>
<math><mi xlink:href="javascript:alert(1)">m</mi></math>
<details open ontoggle=alert(1)><summary>s</summary>d</details>
<object data="https://evil.example/x.swf"></object>
<base href="https://evil.example/">
<meta http-equiv="refresh" content="0;url=https://evil.example">
<link rel=stylesheet href="https://evil.example/x.css">
</article></section></main><script>alert(2)</script>
<!-- <script>alert(3)</script> -->

[md link](javascript:alert(1)) [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
![img](https://evil.example/img.png) ![svg](data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)
![rel](../../../../etc/passwd)

```mermaid
graph TD
  a["<img src=x onerror=alert(1)>"] --> b["</svg><script>alert(1)</script>"]
  click a "javascript:alert(1)"
```

<table><tr><td>unclosed
"""

ALLOWED_TAGS = {
    "html", "head", "body", "meta", "title", "style", "link", "header", "nav", "main", "section", "article", "aside", "form", "input", "button", "a", "span", "ul", "ol", "li", "p", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "pre", "code", "strong", "em", "b", "i", "u", "s", "del", "ins", "sub", "sup", "small", "mark", "kbd", "samp", "br", "hr", "img", "blockquote", "details", "summary",
    "dl", "dt", "dd", "div", "center", "figure", "figcaption", "svg", "defs", "marker", "path", "line", "rect", "text", "g",
}


class _Audit(HTMLParser):
    """Every tag and attribute of a page, for checks that no script or remote load got in."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.problems, self.style_blocks = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag {tag}")
        for k, v in attrs:
            v = (v or "").strip().lower()
            if k.startswith("on") or k in ("srcdoc", "formaction", "xlink:href"):
                self.problems.append(f"{tag} {k}")
            if k in ("href", "src", "action"):
                if v.startswith(("javascript:", "vbscript:", "data:text", "data:image/svg")):
                    self.problems.append(f"{tag} {k}={v}")
                if k == "src" and v.startswith(("http:", "https:", "//")):
                    self.problems.append(f"remote {tag} src {v}")
            if k == "style" and "url(" in v:
                self.problems.append(f"{tag} style url")
        if tag == "link" and dict(attrs).get("href") not in ("data:,",):
            self.problems.append("link element")
        if tag == "style":
            self.style_blocks += 1


def audit(page: str) -> _Audit:
    a = _Audit()
    a.feed(page)
    return a


def test_card_renders_as_the_hub_shows_it():
    page = render_card_html(CARD)
    a = audit(page)
    assert not a.problems, a.problems
    assert a.style_blocks == 1  # our own inline CSS, nothing else
    # the markdown table, with its bold cell
    assert "<table>" in page and "<strong>this model</strong>" in page and "0.8125 ± 0.0312" in page
    # the metadata panel
    for text in ("apache-2.0", "hubkit-demo/tiny-mistral", "Adapter", "hubkit-demo/belbel-facts", "peft", "text-generation", "lora"):
        assert text in page, text
    # the evaluation results panel from model-index
    panel = page.split('id="evaluation-results"')[1].split("</section>")[0]
    assert "belbel" in panel and "acc" in panel and "0.8125" in panel and ">0<" in panel  # few-shot 0
    assert "hubkit eval (fp32-lora, run 20261129-abc)" in panel
    # code stays code
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    # mermaid drawn here: an SVG with both nodes, and its edge as text
    assert "<svg" in page and "pretrained" in page and "LoRA on facts" in page
    assert "pretrained / hubkit-demo/tiny-mistral → lora / LoRA on facts" in page
    # the chart, relative to the card
    assert '<img src="results.png" alt="results">' in page


def test_nothing_in_a_readme_runs_or_loads_from_elsewhere():
    for page in (render_card_html(XSS), render_markdown(split_front_matter(XSS)[1], Links(repo_url="/me/x", rev="main", on_hub=True))):
        a = audit(page)
        assert not a.problems, a.problems
        assert "<script" not in page.lower() and "<iframe" not in page.lower() and "src=\"https://evil" not in page
        assert "window.__pwned" not in page or "&lt;script&gt;window.__pwned" in page
    page = render_card_html(XSS)
    # the card cannot close the page's own elements: the sidebar is still outside the article
    assert page.index('<aside class="side">') > page.index("</article>")
    assert page.count("<article") == page.count("</article>") == 1
    # remote images become links, never loads
    assert 'href="https://evil.example/img.png"' in page and "not loaded" in page


def test_front_matter_is_json_safe_and_bounded():
    data, body, err = split_front_matter("---\na: &x [1, 2]\nb: *x\n---\nbody")
    assert err is None and data == {"a": [1, 2], "b": [1, 2]} and body == "body"
    bomb = "---\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)) + "---\n"
    data, _, err = split_front_matter(bomb)  # 10**9 values once expanded
    assert data is None and "too many values" in err
    data, _, err = split_front_matter("---\ndate: 2026-11-29\nn: 1\n---\n")
    assert err is None and data == {"date": "2026-11-29", "n": 1}
    data, _, err = split_front_matter("---\n- a\n- b\n---\n")
    assert data is None and "mapping" in err


def test_mermaid_other_diagrams_show_their_source():
    out = mermaid_html("sequenceDiagram\n  A->>B: <script>x</script>")
    assert "<svg" not in out and "&lt;script&gt;" in out
    lr = mermaid_html("graph LR\n  a --> b\n  a -- label --> c\n  b --> d")
    assert lr.count("<rect") == 4 and "(label)" in lr


# -- pages served by the hub --------------------------------------------------------------------------


def _call(hub, method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(hub.url + path, data=data, method=method, headers={"Content-Type": ctype} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def publish_raw(hub, repo: str, files: dict[str, bytes], rtype: str = "model", message: str = "upload", sdk: str | None = None) -> str:
    """Create (once) and commit through the HTTP API, as the client does (LFS for binaries)."""
    ns, name = repo.split("/")
    _call(hub, "POST", "/api/repos/create", {"name": name, "organization": ns, "type": rtype, **({"sdk": sdk} if sdk else {})})
    lines = [{"key": "header", "value": {"summary": message}}]
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[rtype]
    for path, data in files.items():
        if path.endswith((".png", ".safetensors")):
            oid = hashlib.sha256(data).hexdigest()
            _, _, resp = _call(hub, "POST", f"/{prefix}{repo}.git/info/lfs/objects/batch", {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]})
            obj = json.loads(resp)["objects"][0]
            if "actions" in obj:
                href = obj["actions"]["upload"]["href"][len(hub.url):]
                assert _call(hub, "PUT", href, data, "application/octet-stream")[0] == 200
            lines.append({"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": len(data)}})
        else:
            lines.append({"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}})
    status, _, resp = _call(hub, "POST", f"/api/{rtype}s/{repo}/commit/main", "\n".join(json.dumps(x) for x in lines).encode(), "application/x-ndjson")
    assert status == 200, resp
    return json.loads(resp)["commitOid"]


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub") as h:
        publish_raw(h, "me/tiny-lora", {"README.md": CARD.encode(), "results.png": PNG, "adapter_model.safetensors": b"\0" * 5000, "eval/20261129-abc/results.json": b"{}"}, message="first upload")
        _call(h, "POST", "/api/models/me/tiny-lora/tag/main", {"tag": "v1"})
        publish_raw(h, "me/tiny-lora", {"notes.txt": b"second"}, message="add notes <b>bold</b>")
        publish_raw(h, "me/facts", {"README.md": b"---\nlicense: cc-by-4.0\n---\n# facts\n", "train.jsonl": b'{"q": 1}\n'}, rtype="dataset")
        publish_raw(h, "me/compare", {"README.md": b"---\ntitle: Compare adapters\nemoji: \xf0\x9f\xa7\xaa\nsdk: gradio\napp_file: app.py\n---\nSide by side.\n", "app.py": b"print(1)\n"}, rtype="space", sdk="gradio")
        yield h


def test_pages_answer_the_hubs_web_routes_while_the_api_works(hub):
    sha = json.loads(_call(hub, "GET", "/api/models/me/tiny-lora")[2])["sha"]
    pages = {
        "/": ["me/tiny-lora", "me/facts", "me/compare"],
        "/models": ["me/tiny-lora"],
        "/me/tiny-lora": ["0.8125 ± 0.0312", "Evaluation results", f"/me/tiny-lora/resolve/{sha}/results.png", "hubkit-demo/tiny-mistral", "Adapter"],
        "/me/tiny-lora/tree/main": ["adapter_model.safetensors", "5.0 kB", "LFS", "eval/", "notes.txt"],
        "/me/tiny-lora/tree/main/eval": ["20261129-abc/"],
        "/me/tiny-lora/tree/v1": ["README.md"],
        "/me/tiny-lora/blob/main/notes.txt": ["second", "6 Bytes"],
        "/me/tiny-lora/commits/main": ["add notes &lt;b&gt;bold&lt;/b&gt;", "first upload", "initial commit", "v1"],
        f"/me/tiny-lora/commit/{sha}": ["notes.txt", "added"],
        "/datasets/me/facts": ["cc-by-4.0", "facts", "Dataset card"],
        "/spaces/me/compare": ["Compare adapters", "gradio", "Side by side.", "does not run them"],
        "/me/tiny-lora?search=x": ["0.8125"],
    }
    for path, wanted in pages.items():
        status, headers, body = _call(hub, "GET", path)
        page = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/html"), (path, status)
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        for w in wanted:
            assert w in page, (path, w)
        assert not audit(page).problems, (path, audit(page).problems)
    # notes.txt is not in v1's tree
    assert "notes.txt" not in _call(hub, "GET", "/me/tiny-lora/tree/v1")[2].decode()
    # the API beside the pages: same repo, JSON, model info with cardData
    status, headers, body = _call(hub, "GET", "/api/models/me/tiny-lora")
    info = json.loads(body)
    assert status == 200 and info["cardData"]["base_model"] == "hubkit-demo/tiny-mistral" and info["model-index"][0]["name"] == "me/tiny-lora"
    assert _call(hub, "GET", f"/me/tiny-lora/resolve/{sha}/results.png")[2] == PNG
    assert _call(hub, "HEAD", "/me/tiny-lora")[0] == 200
    for missing in ("/me/nothing", "/me/tiny-lora/blob/main/nope.txt", "/me/tiny-lora/tree/nobranch", "/datasets/me/tiny-lora", "/me/tiny-lora/whatever/x"):
        status, headers, body = _call(hub, "GET", missing)
        assert status == 404 and headers["Content-Type"].startswith("text/html") and b"Traceback" not in body, missing


def test_discussions_and_pull_requests_have_pages(hub):
    """What `hubkit verify --discussion/--open-pr` and `publish --create-pr` print a link to: the
    thread, its markdown rendered and vetted like a card, and a pull request's files."""
    sha = json.loads(_call(hub, "GET", "/api/models/me/tiny-lora")[2])["sha"]
    body = {"title": "hubkit verify: 1 of 2 numbers agree", "description": "| task | acc |\n|---|---|\n| arc | 0.81 |\n\n" + XSS, "pullRequest": False}
    status, _, resp = _call(hub, "POST", "/api/models/me/tiny-lora/discussions", body)
    assert status == 200 and json.loads(resp)["num"] == 1
    pages = {
        "/me/tiny-lora/discussions": ["hubkit verify: 1 of 2 numbers agree", "Community"],
        "/me/tiny-lora/discussions/1": ["#1 hubkit verify: 1 of 2 numbers agree", "<table", "0.81"],
    }
    for path, wanted in pages.items():
        status, headers, page = _call(hub, "GET", path)
        page = page.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/html"), (path, status)
        for w in wanted:
            assert w in page, (path, w)
        assert not audit(page).problems and "<script" not in page.lower(), (path, audit(page).problems)
    assert _call(hub, "GET", "/me/tiny-lora/discussions/7")[0] == 404
    # titles outside the Hub's bounds are refused, nothing stored
    assert _call(hub, "POST", "/api/models/me/tiny-lora/discussions", {"title": "x", "description": ""})[0] == 400
    assert sha == json.loads(_call(hub, "GET", "/api/models/me/tiny-lora")[2])["sha"]


def test_pages_escape_what_repos_hold(hub):
    publish_raw(hub, "me/xss", {"README.md": XSS.encode(), "<img src=x onerror=alert(1)>.txt": b"x"}, message="<script>alert(1)</script>")
    for path in ("/me/xss", "/me/xss/tree/main", "/me/xss/commits/main", "/", "/me/xss/blob/main/README.md"):
        page = _call(hub, "GET", path)[2].decode()
        assert not audit(page).problems, (path, audit(page).problems)
        assert "<script" not in page.lower(), path


def test_preview_server_serves_one_card_folder(tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    (card / "README.md").write_text(CARD)
    (card / "results.png").write_bytes(PNG)
    (tmp_path / "secret.txt").write_text("not for the preview")
    with preview_server(card) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(srv.url, timeout=30).read().decode()
        assert "0.8125" in page and "Evaluation results" in page and 'src="/files/results.png"' in page
        assert urllib.request.urlopen(srv.url + "files/results.png", timeout=30).read() == PNG
        for bad in ("files/../secret.txt", "files/%2e%2e/secret.txt", "files/" + str(tmp_path / "secret.txt"), "files/..%2fsecret.txt"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(srv.url + bad, timeout=30)
            assert e.value.code == 404
        # edits show on reload
        (card / "README.md").write_text(CARD.replace("0.8125 ± 0.0312", "0.9000 ± 0.0100"))
        assert "0.9000 ± 0.0100" in urllib.request.urlopen(srv.url, timeout=30).read().decode()


def test_rendered_relative_links_stay_in_the_repo():
    html = render_markdown("[run](eval/x/results.json) [up](../../x) [hub](https://huggingface.co/me/y) [anchor](#results)", Links(repo_url="/me/x", rev="main", on_hub=True))
    assert 'href="/me/x/blob/main/eval/x/results.json"' in html
    assert 'href="/me/y"' in html  # huggingface.co links point at this hub, which stands in for it
    assert 'href="#results"' in html
    assert re.search(r"<a>up</a>", html)  # a link out of the repo keeps its text, loses its target
