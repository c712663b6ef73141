"""The local hub's web pages, and model-card previews before anything is published.

Pages answer the Hub's web routes (`/{owner}/{name}`, `/tree/`, `/blob/`, `/commits/`,
`/commit/`, `/datasets/...`, `/spaces/...`, and an index at `/`), rendered on the server:

- the README's markdown through markdown-it-py (CommonMark, tables, strikethrough); raw HTML in
  it goes through a small allow-list (tags from a fixed set re-emitted without attributes, `img`
  and `a` with vetted URLs), everything else is dropped, and all text is escaped;
- the front matter as the Hub's metadata panel (license, base model and its relation, datasets,
  tags, library, pipeline) and the model-index as its "Evaluation results" table;
- ```mermaid blocks as a small inline SVG drawn here (no script, no CDN), with its edges as text;
- images from the repo through `resolve`; an image on another host is shown as a link, never
  fetched: a page loads nothing from anywhere but this server, and runs no script at all (the
  server also sends a Content-Security-Policy that says so).

`render_card_html` renders one README as a standalone page (what `hubkit card --preview` shows)
and `preview_server` serves a card folder on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import os
import posixpath
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import jinja2
import yaml
from markupsafe import Markup

from . import names

if TYPE_CHECKING:
    from .server import Store

MAX_FRONT_MATTER = 1 << 20
MAX_TEXT_VIEW = 1 << 20  # larger files are offered for download, not shown
HUB_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
RELATIONS = {"adapter": "Adapter", "merge": "Merge", "quantized": "Quantized", "finetune": "Finetune"}
KIND_LABEL = {"model": "Models", "dataset": "Datasets", "space": "Spaces"}
SECTION = {"model": "models", "dataset": "datasets", "space": "spaces"}

# A page's own policy, for the standalone preview (the server also sends it as a header).
CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"

# -- front matter -------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")  # huggingface_hub's own


MAX_FRONT_MATTER_VALUES = 100_000


def _jsonable(value: Any, budget: list[int], depth: int = 0) -> Any:
    """A fresh JSON-safe copy (dates as ISO strings, keys as strings). YAML aliases are copied
    out, so `budget` caps how many values the copy may hold: a few bytes of nested aliases
    would otherwise expand to gigabytes in every repo listing that carries cardData."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("front matter expands to too many values")
    if depth > 50:
        raise ValueError("front matter is nested too deeply")
    if isinstance(value, dict):
        return {str(k): _jsonable(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v, budget, depth + 1) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def split_front_matter(text: str) -> tuple[dict | None, str, str | None]:
    """(front matter as a JSON-safe dict or None, the markdown after it, the YAML error or None)."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return None, text, None
    body = text[m.end():]
    raw = m.group(2)
    if len(raw) > MAX_FRONT_MATTER:
        return None, body, "front matter is larger than 1 MiB"
    try:
        data = _jsonable(yaml.safe_load(raw), [MAX_FRONT_MATTER_VALUES])
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        return None, body, str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if data is None:
        return None, body, None
    if not isinstance(data, dict):
        return None, body, "front matter must be a mapping"
    return data, body, None


# -- links ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    """Where a card's relative links and images point. On the hub: `repo_url` (e.g.
    "/owner/name") and `rev`; in a preview: `prefix` in front of the file's path."""

    repo_url: str | None = None
    rev: str = "main"
    prefix: str = ""
    on_hub: bool = False
    base_dir: str = ""  # the folder of the markdown file, which relative paths start from

    def asset(self, rel: str) -> str:
        if self.repo_url is not None:
            return f"{self.repo_url}/resolve/{quote(self.rev, safe='')}/{quote(rel)}"
        return self.prefix + quote(rel)

    def page(self, rel: str) -> str:
        if self.repo_url is not None:
            return f"{self.repo_url}/blob/{quote(self.rev, safe='')}/{quote(rel)}"
        return self.prefix + quote(rel)


_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*\Z", re.I)


def vet_url(url: str, links: Links, *, image: bool) -> tuple[str | None, bool]:
    """(the URL to use, or None to drop it; whether it is off this host). Images off this host
    are never loaded: callers show them as links."""
    url = (url or "").strip()
    if not url or any(ord(c) < 0x20 for c in url):
        return None, False
    if url.startswith("#"):
        return (None, False) if image else (url, False)
    if image and _DATA_IMAGE.match(url):
        return url, False
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") or url.startswith("//"):
        host = (parts.hostname or "").lower()
        if links.on_hub and host in HUB_HOSTS:  # this hub stands in for huggingface.co
            local = parts.path or "/"
            return local + (f"?{parts.query}" if parts.query and not image else ""), False
        return (url if scheme else "https:" + url), True
    if scheme == "mailto" and not image:
        return url, True
    if scheme or parts.netloc:
        return None, False
    if url.startswith("/"):
        return (url, False) if links.on_hub else (None, False)
    rel = posixpath.normpath(posixpath.join(links.base_dir, unquote(parts.path)))
    try:
        names.repo_path(rel)
    except names.BadName:
        return None, False
    target = links.asset(rel) if image else links.page(rel)
    return target + (f"#{parts.fragment}" if parts.fragment and not image else ""), False


# -- raw HTML in markdown -----------------------------------------------------------------------

_SIMPLE_TAGS = frozenset(
    "b i em strong u s del ins sub sup small mark code kbd samp pre br hr p blockquote details summary "
    "ul ol li dl dt dd h1 h2 h3 h4 h5 h6 table thead tbody tr th td div span center figure figcaption".split()
)
_VOID = frozenset({"br", "hr"})
_DROP_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "template", "noscript", "textarea", "title", "svg", "math"})
_TAG = re.compile(r"<!--.*?(?:-->|\Z)|<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>|<!\[CDATA\[.*?(?:\]\]>|\Z)|<[!?][^>]*>", re.S)
_ATTR = re.compile(r"([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'=<>`]+)))?")


def _attrs(text: str) -> dict[str, str]:
    out = {}
    for m in _ATTR.finditer(text or ""):
        out.setdefault(m.group(1).lower(), html.unescape(m.group(2) or m.group(3) or m.group(4) or ""))
    return out


def sanitize_html(fragment: str, links: Links) -> str:
    """Raw HTML from a README, made harmless: allowed tags re-emitted bare (no attributes), `img`
    with a vetted src (and alt, width, height), `a` with a vetted href; comments, other tags and
    the content of script-like elements dropped; all text escaped."""
    out, pos, skip_until = [], 0, None
    for m in _TAG.finditer(fragment):
        text = fragment[pos:m.start()]
        pos = m.end()
        if skip_until is None:
            out.append(html.escape(text, quote=False))
        closing, tag = m.group(1), (m.group(2) or "").lower()
        if skip_until is not None:
            if closing and tag == skip_until:
                skip_until = None
            continue
        if not tag:
            continue  # comment, doctype, CDATA, processing instruction
        if tag in _DROP_CONTENT:
            if not closing and not (m.group(3) or "").rstrip().endswith("/"):
                skip_until = tag
            continue
        if tag in _SIMPLE_TAGS:
            out.append(f"<{tag}>" if tag in _VOID else f"<{closing}{tag}>")
        elif tag == "img" and not closing:
            a = _attrs(m.group(3))
            src, offsite = vet_url(a.get("src", ""), links, image=True)
            alt = a.get("alt", "")
            if src and not offsite:
                size = "".join(f' {k}="{a[k]}"' for k in ("width", "height") if re.fullmatch(r"\d{1,5}%?", a.get(k, "")))
                out.append(f'<img src="{html.escape(src)}" alt="{html.escape(alt)}"{size}>')
            elif src:
                out.append(_offsite_image(src, alt))
        elif tag == "a":
            if closing:
                out.append("</a>")
            else:
                href, offsite = vet_url(_attrs(m.group(3)).get("href", ""), links, image=False)
                out.append(_anchor_open(href, offsite))
    if skip_until is None:
        out.append(html.escape(fragment[pos:], quote=False))
    return "".join(out)


def _anchor_open(href: str | None, offsite: bool) -> str:
    if not href:
        return "<a>"
    rel = ' rel="noopener noreferrer nofollow"' if offsite else ""
    return f'<a href="{html.escape(href)}"{rel}>'


def _offsite_image(src: str, alt: str) -> str:
    label = html.escape(alt or "image")
    return f'<a class="offsite-image" href="{html.escape(src)}" rel="noopener noreferrer nofollow">[{label}: image on another host, not loaded]</a>'


# -- mermaid --------------------------------------------------------------------------------------

_MERMAID_HEAD = re.compile(r"^\s*(graph|flowchart)(?:\s+(TD|TB|BT|LR|RL))?\s*;?\s*$", re.I)
_NODE = r"([A-Za-z0-9_][\w\-]*)\s*(?:(\[\[|\[\(|\(\(|\(\[|\[|\(|\{\{|\{|>)\s*(\"(?:[^\"]*)\"|[^\]\)\}]*?)\s*(\]\]|\)\]|\)\)|\]\)|\]|\)|\}\}|\}))?"
_NODE_RE = re.compile(_NODE)
_EDGE_OP = re.compile(r"\s*(?:--\s*([^->|][^-]*?)\s*-->|==\s*([^=>|][^=]*?)\s*==>|(-->|---|-\.->|-\.-|==>|===|--o|--x|<-->)(?:\s*\|([^|]*)\|)?)\s*")


@dataclass
class _Graph:
    direction: str
    labels: dict
    order: list
    edges: list  # (source, target, label)
    emphasis: set


def parse_mermaid(src: str) -> _Graph | None:
    """A flowchart's nodes, labels and edges; None for any other diagram or unparsable text."""
    lines = [ln.split("%%")[0].strip().rstrip(";").strip() for ln in src.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return None
    head = _MERMAID_HEAD.match(lines[0])
    if not head:
        return None
    g = _Graph((head.group(2) or "TD").upper().replace("TB", "TD"), {}, [], [], set())

    def node(m: re.Match) -> str:
        nid = m.group(1)
        if nid not in g.labels:
            g.order.append(nid)
            g.labels[nid] = nid
        if m.group(2):
            label = m.group(3).strip()
            if len(label) >= 2 and label[0] == label[-1] == '"':
                label = label[1:-1]
            g.labels[nid] = label
        return nid

    for line in lines[1:]:
        word = line.split()[0].lower()
        if word == "style":
            parts = line.split()
            if len(parts) >= 3 and "stroke-width" in parts[2]:
                g.emphasis.add(parts[1])
            continue
        if word in ("classdef", "class", "linkstyle", "click", "subgraph", "end", "direction", "accTitle".lower(), "accdescr"):
            continue
        pos, prev, pending = 0, None, None
        while pos < len(line):
            m = _NODE_RE.match(line, pos)
            if not m:
                return None
            nid = node(m)
            if prev is not None:
                g.edges.append((prev, nid, pending))
            pos = m.end()
            if pos >= len(line):
                break
            e = _EDGE_OP.match(line, pos)
            if not e:
                rest = line[pos:].strip()
                if rest.startswith("&"):
                    return None  # a & b fan-out: rare; shown as source
                return None
            pending = next((x for x in (e.group(1), e.group(2), e.group(4)) if x), None)
            prev, pos = nid, e.end()
    return g if g.order else None


def _label_lines(label: str) -> list[str]:
    parts = re.split(r"<br\s*/?>", label, flags=re.I)
    return [html.unescape(re.sub(r"<[^>]*>", "", p)).strip() for p in parts] or [""]


def mermaid_html(src: str) -> str:
    """A ```mermaid block as HTML: an inline SVG of a flowchart with its edges listed as text,
    or, for another kind of diagram, its source with a note. Never fetches anything."""
    g = parse_mermaid(src)
    if g is None:
        return (
            '<figure class="mermaid-source"><figcaption>mermaid diagram (drawn by a script on the Hub; its source here)</figcaption>'
            f"<pre><code>{html.escape(src)}</code></pre></figure>"
        )
    # ranks: longest path from a root, back edges ignored
    succ: dict[str, list[str]] = {n: [] for n in g.order}
    for a, b, _ in g.edges:
        succ[a].append(b)
    rank = {n: 0 for n in g.order}
    state: dict[str, int] = {}
    topo: list[str] = []

    def visit(n: str) -> None:
        stack = [(n, iter(succ[n]))]
        state[n] = 1
        while stack:
            cur, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[cur] = 2
                topo.append(cur)
                stack.pop()
            elif state.get(nxt) is None:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))

    for n in g.order:
        if n not in state:
            visit(n)
    topo.reverse()
    position = {n: i for i, n in enumerate(topo)}
    for n in topo:
        for b in succ[n]:
            if position[b] > position[n]:
                rank[b] = max(rank[b], rank[n] + 1)
    layers: dict[int, list[str]] = {}
    for n in g.order:
        layers.setdefault(rank[n], []).append(n)
    lines = {n: _label_lines(g.labels[n]) for n in g.order}
    char_w, line_h, pad = 7.2, 17, 10
    size = {n: (max(60, int(max(len(x) for x in lines[n]) * char_w) + 2 * pad), len(lines[n]) * line_h + 2 * pad - 4) for n in g.order}
    horizontal = g.direction in ("LR", "RL")
    gap_main, gap_cross = 48, 24
    pos: dict[str, tuple[float, float]] = {}
    main = 10.0
    cross_extent = 0.0
    for r in sorted(layers):
        layer = layers[r]
        thick = max((size[n][0] if horizontal else size[n][1]) for n in layer)
        cross = 10.0
        for n in layer:
            w, h = size[n]
            pos[n] = (main, cross) if horizontal else (cross, main)
            cross += (h if horizontal else w) + gap_cross
        cross_extent = max(cross_extent, cross)
        main += thick + gap_main
    width = (main if horizontal else cross_extent) + 10 - (gap_main if horizontal else gap_cross)
    height = (cross_extent if horizontal else main) + 10 - (gap_cross if horizontal else gap_main)
    if g.direction in ("BT", "RL"):  # mirror along the main axis
        for n, (x, y) in pos.items():
            w, h = size[n]
            pos[n] = (width - x - w, y) if horizontal else (x, height - y - h)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mermaid" role="img" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">']
    svg.append('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>')

    def anchor(n: str, out: bool) -> tuple[float, float]:
        x, y = pos[n]
        w, h = size[n]
        if horizontal:
            right = out != (g.direction == "RL")
            return (x + w if right else x, y + h / 2)
        down = out != (g.direction == "BT")
        return (x + w / 2, y + h if down else y)

    for a, b, label in g.edges:
        (x1, y1), (x2, y2) = anchor(a, True), anchor(b, False)
        svg.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#6b7280" stroke-width="1.5" marker-end="url(#arrow)"/>')
        if label:
            svg.append(f'<text x="{(x1 + x2) / 2 + 4:.1f}" y="{(y1 + y2) / 2:.1f}" font-size="11" fill="#374151">{html.escape(label)}</text>')
    for n in g.order:
        x, y = pos[n]
        w, h = size[n]
        stroke = 3 if n in g.emphasis else 1.2
        svg.append(f'<g><rect x="{x:.1f}" y="{y:.1f}" width="{w}" height="{h}" rx="6" fill="#f3f4f6" stroke="#4b5563" stroke-width="{stroke}"/>')
        for i, text in enumerate(lines[n]):
            svg.append(f'<text x="{x + w / 2:.1f}" y="{y + pad + 12 + i * line_h:.1f}" text-anchor="middle" font-size="12" fill="#111827">{html.escape(text)}</text>')
        svg.append("</g>")
    svg.append("</svg>")

    def name(n: str) -> str:
        return html.escape(" / ".join(x for x in lines[n] if x))

    edges = "".join(f"<li>{name(a)} → {name(b)}{' (' + html.escape(lbl) + ')' if lbl else ''}</li>" for a, b, lbl in g.edges)
    alone = [n for n in g.order if not any(n in (a, b) for a, b, _ in g.edges)]
    edges += "".join(f"<li>{name(n)}</li>" for n in alone)
    return f'<figure class="mermaid">{"".join(svg)}<figcaption><details><summary>diagram as text</summary><ul>{edges}</ul></details></figcaption></figure>'


# -- markdown -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _markdown_parser():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True, "typographer": False}).enable(["table", "strikethrough"])
    return md


def render_markdown(text: str, links: Links) -> str:
    """A README's markdown (front matter already removed) as sanitized HTML."""
    md = _markdown_parser()
    env: dict = {}
    tokens = md.parse(text, env)
    renderer = md.renderer

    def fence(tokens, idx, options, env):
        tok = tokens[idx]
        info = (tok.info or "").strip().split()
        lang = info[0].lower() if info else ""
        if lang == "mermaid":
            return mermaid_html(tok.content)
        cls = f' class="language-{html.escape(re.sub(r"[^A-Za-z0-9_+-]", "", lang))}"' if lang else ""
        return f"<pre><code{cls}>{html.escape(tok.content)}</code></pre>\n"

    def code_block(tokens, idx, options, env):
        return f"<pre><code>{html.escape(tokens[idx].content)}</code></pre>\n"

    def raw(tokens, idx, options, env):
        return sanitize_html(tokens[idx].content, links)

    def image(tokens, idx, options, env):
        tok = tokens[idx]
        alt = renderer.renderInlineAsText(tok.children or [], options, env)
        src, offsite = vet_url(tok.attrGet("src") or "", links, image=True)
        if not src:
            return html.escape(alt)
        if offsite:
            return _offsite_image(src, alt)
        title = tok.attrGet("title")
        t = f' title="{html.escape(str(title))}"' if title else ""
        return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}"{t}>'

    def link_open(tokens, idx, options, env):
        href, offsite = vet_url(tokens[idx].attrGet("href") or "", links, image=False)
        return _anchor_open(href, offsite)

    rules = {"fence": fence, "code_block": code_block, "html_block": raw, "html_inline": raw, "image": image, "link_open": link_open}
    saved = {k: renderer.rules.get(k) for k in rules}
    # the parser is shared: render under a lock with our rules, then put the defaults back
    with _RENDER_LOCK:
        renderer.rules.update(rules)
        try:
            return balance_tags(renderer.render(tokens, md.options, env))
        finally:
            for k, v in saved.items():
                if v is None:
                    renderer.rules.pop(k, None)
                else:
                    renderer.rules[k] = v


_RENDER_LOCK = threading.Lock()
_ANY_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>")
_VOID_ELEMENTS = frozenset({"br", "hr", "img", "wbr", "col", "area", "source"})


def balance_tags(markup: str) -> str:
    """Close what a card left open and drop closers of what it never opened, so the card
    cannot reach into the page around it. Works on this module's own output, where text is
    escaped and every tag is well-formed."""
    out, stack, pos = [], [], 0
    for m in _ANY_TAG.finditer(markup):
        out.append(markup[pos:m.start()])
        pos = m.end()
        closing, tag = m.group(1), m.group(2).lower()
        if not closing:
            out.append(m.group(0))
            if tag not in _VOID_ELEMENTS and not m.group(3).rstrip().endswith("/"):
                stack.append(tag)
        elif tag in stack:
            while stack:
                top = stack.pop()
                out.append(f"</{top}>")
                if top == tag:
                    break
    out.append(markup[pos:])
    out.extend(f"</{t}>" for t in reversed(stack))
    return "".join(out)

# -- card panels ----------------------------------------------------------------------------------


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _scalar(value: Any) -> str | None:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _hub_id(value: Any) -> str | None:
    """A Hub id from metadata, or None when it is not one (a local path, a URL)."""
    s = _scalar(value)
    if s and re.fullmatch(r"[\w.\-]{1,96}(/[\w.\-]{1,96})?", s) and ".." not in s:
        return s
    return None


def eval_rows(meta: dict) -> list[dict]:
    """The model-index as rows of the Hub's "Evaluation results" panel: model, task, dataset
    (name, id, config, split), metric, value, few-shot, source (name, url)."""
    rows = []
    for model in _as_list(meta.get("model-index")):
        if not isinstance(model, dict):
            continue
        for res in _as_list(model.get("results")):
            if not isinstance(res, dict):
                continue
            task = res.get("task") if isinstance(res.get("task"), dict) else {}
            ds = res.get("dataset") if isinstance(res.get("dataset"), dict) else {}
            source = res.get("source") if isinstance(res.get("source"), dict) else {}
            args = ds.get("args") if isinstance(ds.get("args"), dict) else {}
            for metric in _as_list(res.get("metrics")):
                if not isinstance(metric, dict):
                    continue
                fewshot = _scalar(args.get("num_fewshot")) or _scalar((metric.get("args") or {}).get("num_fewshot") if isinstance(metric.get("args"), dict) else None)
                rows.append({
                    "model": _scalar(model.get("name")) or "",
                    "task": _scalar(task.get("name")) or _scalar(task.get("type")) or "",
                    "dataset": _scalar(ds.get("name")) or _scalar(ds.get("type")) or "",
                    "dataset_id": _hub_id(ds.get("type")),
                    "config": _scalar(ds.get("config")) or "",
                    "split": _scalar(ds.get("split")) or "",
                    "metric": _scalar(metric.get("name")) or _scalar(metric.get("type")) or "",
                    "value": _scalar(metric.get("value")) if _scalar(metric.get("value")) is not None else "",
                    "fewshot": fewshot or "",
                    "verified": metric.get("verified") is True,
                    "source_name": _scalar(source.get("name")) or "",
                    "source_url": _scalar(source.get("url")) or "",
                })
    return rows


def card_view(meta: dict | None, links: Links) -> dict:
    """What the metadata panel shows, from a README's front matter."""
    meta = meta or {}
    license_id = _scalar(meta.get("license"))
    license_link = None
    if license_id == "other" and _scalar(meta.get("license_link")):
        license_link, _ = vet_url(str(meta["license_link"]), links, image=False)
    relation = _scalar(meta.get("base_model_relation"))
    rows = eval_rows(meta)
    for r in rows:
        r["source_href"], r["source_offsite"] = vet_url(r["source_url"], links, image=False) if r["source_url"] else (None, False)
    bases = [b for b in (_scalar(v) for v in _as_list(meta.get("base_model"))) if b]
    return {
        "license": license_id,
        "license_name": _scalar(meta.get("license_name")),
        "license_link": license_link,
        "base_models": [{"id": b, "hub_id": _hub_id(b)} for b in bases],
        "relation": RELATIONS.get(relation or "", relation),
        "datasets": [{"id": d, "hub_id": _hub_id(d)} for d in (_scalar(v) for v in _as_list(meta.get("datasets"))) if d],
        "tags": [t for t in (_scalar(v) for v in _as_list(meta.get("tags"))) if t],
        "languages": [t for t in (_scalar(v) for v in _as_list(meta.get("language"))) if t],
        "library_name": _scalar(meta.get("library_name")),
        "pipeline_tag": _scalar(meta.get("pipeline_tag")),
        "eval_rows": rows,
        "title": _scalar(meta.get("title")),
        "emoji": _scalar(meta.get("emoji")),
        "sdk": _scalar(meta.get("sdk")),
        "app_file": _scalar(meta.get("app_file")),
        "short_description": _scalar(meta.get("short_description")),
    }


# -- templates -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    from ..templating import builtin_template_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(builtin_template_dir())),
        autoescape=True,  # every value is escaped unless it is Markup made here
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = human_size
    env.filters["qs"] = lambda v: quote(str(v), safe="")
    env.filters["qp"] = lambda v: quote(str(v))
    env.filters["date"] = lambda v: str(v or "").replace("T", " ").replace("Z", " UTC")
    return env


def _render(template: str, **ctx) -> str:
    return _env().get_template(f"hub/{template}").render(csp=CSP, **ctx)


def human_size(n: Any) -> str:
    """Bytes in the Hub's decimal units (1.2 kB, 3.4 MB)."""
    if not isinstance(n, (int, float)):
        return ""
    for unit in ("Bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "Bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def render_card_body(readme: str, links: Links) -> dict:
    """A README split into front matter (metadata panel) and rendered body."""
    meta, body, error = split_front_matter(readme)
    return {"html": Markup(render_markdown(body, links)), "view": card_view(meta, links), "yaml_error": error, "meta": meta or {}}


def render_card_html(readme: str, *, title: str | None = None, asset_prefix: str = "") -> str:
    """A model card (README.md text) as one standalone HTML page, rendered as the hub shows it:
    metadata panel, evaluation results, markdown tables, mermaid, images. Relative images and
    links point at `asset_prefix + path` ("" suits a page written next to the README). The page
    runs no script and loads nothing from another host."""
    card = render_card_body(readme, Links(prefix=asset_prefix))
    heading = title or _first_heading(readme) or "model card"
    return _render("preview.html.j2", title=heading, card=card)


def _first_heading(text: str) -> str | None:
    m = re.search(r"^#\s+(.+)$", split_front_matter(text)[1], re.M)
    return m.group(1).strip() if m else None


def error_page(status: int, message: str, locked: bool) -> str:
    return _render("error.html.j2", status=status, message=message, login=status == 401 and locked)


def login_page(locked: bool, failed: bool = False) -> str:
    return _render("login.html.j2", locked=locked, failed=failed)


# -- the hub's pages ------------------------------------------------------------------------------


def page(store: "Store", segs: list[str], query: dict, *, base: str) -> tuple[int, str]:
    """(status, HTML) for a web route; raises the server's HubError for a missing repo, revision
    or file (rendered as an error page by the server)."""
    from .server import HubError

    if not segs or segs in (["models"], ["datasets"], ["spaces"]):
        kind = {"models": "model", "datasets": "dataset", "spaces": "space"}.get(segs[0]) if segs else None
        return 200, _index(store, kind, (query.get("search") or [""])[0])
    rtype, rest = "model", segs
    if segs[0] in ("datasets", "spaces"):
        rtype, rest = {"datasets": "dataset", "spaces": "space"}[segs[0]], segs[1:]
    if len(rest) < 2:
        raise HubError(404, "Page not found")
    repo_id = names.repo_id(rest[0], rest[1])
    store.require(rtype, repo_id)
    view, args = (rest[2], rest[3:]) if len(rest) > 2 else ("card", [])
    if view == "card":
        return 200, _repo_card(store, rtype, repo_id)
    if view == "tree" and args:
        return 200, _repo_tree(store, rtype, repo_id, args[0], "/".join(args[1:]))
    if view == "blob" and len(args) >= 2:
        return 200, _repo_blob(store, rtype, repo_id, args[0], "/".join(args[1:]))
    if view == "commits" and len(args) == 1:
        return 200, _repo_commits(store, rtype, repo_id, args[0])
    if view == "commit" and len(args) == 1:
        return 200, _repo_commit(store, rtype, repo_id, args[0])
    if view == "discussions" and len(args) <= 1:
        return 200, _repo_discussions(store, rtype, repo_id, args[0] if args else None)
    raise HubError(404, "Page not found")


def _repo_discussions(store: "Store", rtype: str, repo_id: str, num: str | None) -> str:
    """The list of a repo's discussions and pull requests, or one thread (comments as markdown)."""
    from .server import HubError

    ctx = _repo_context(store, rtype, repo_id, "main", "discussions")
    items = store.discussions(rtype, repo_id)
    if num is None:
        return _render("discussions.html.j2", items=list(reversed(items)), **ctx)
    item = next((x for x in items if str(x["num"]) == num), None)
    if item is None:
        raise HubError(404, f"Discussion {num[:20]} not found")
    links = Links(repo_url=ctx["repo_url"], rev=ctx["sha"], on_hub=True)
    events = []
    for e in item.get("events", []):
        data = e.get("data") or {}
        if e.get("type") == "comment":
            events.append({"type": "comment", "date": e.get("createdAt"), "html": render_card_body(str((data.get("latest") or {}).get("raw") or ""), links)["html"]})
        elif e.get("type") == "commit":
            events.append({"type": "commit", "date": e.get("createdAt"), "oid": str(data.get("oid") or ""), "subject": str(data.get("subject") or "")})
    ref = f"refs/pr/{item['num']}" if item.get("isPullRequest") else None
    return _render("discussion.html.j2", item=item, events=events, pr_ref=ref, **ctx)


def _repo_url(rtype: str, repo_id: str) -> str:
    return f"/{names.URL_PREFIX[rtype]}{repo_id}"


def _repo_context(store: "Store", rtype: str, repo_id: str, rev: str, tab: str) -> dict:
    sha, commit = store.resolve(rtype, repo_id, rev)
    refs = store.refs(store.require(rtype, repo_id))
    meta = store.meta(rtype, repo_id)
    card = store.card_data(rtype, repo_id, sha, commit)
    return {
        "rtype": rtype, "repo_id": repo_id, "ns": repo_id.split("/")[0], "name": repo_id.split("/")[1],
        "repo_url": _repo_url(rtype, repo_id), "section": SECTION[rtype], "rev": rev, "sha": sha, "commit": commit,
        "branches": sorted(b for b in refs["branches"] if not b.startswith("refs/pr/")), "tags": sorted(refs["tags"]),
        "private": bool(meta.get("private")), "sdk": meta.get("sdk"), "tab": tab, "view": card_view(card, Links(on_hub=True)),
        "n_files": len(commit["files"]), "total_size": sum(e["size"] for e in commit["files"].values()),
    }


def _repo_card(store: "Store", rtype: str, repo_id: str) -> str:
    ctx = _repo_context(store, rtype, repo_id, "main", "card")
    entry = ctx["commit"]["files"].get("README.md")
    card = None
    if entry is not None:
        raw = store.read_blob(entry, 4 << 20)
        if raw is not None:
            card = render_card_body(raw.decode("utf-8", "replace"), Links(repo_url=ctx["repo_url"], rev=ctx["sha"], on_hub=True))
            ctx["view"] = card["view"]
    return _render("repo.html.j2", card=card, **ctx)


def _repo_tree(store: "Store", rtype: str, repo_id: str, rev: str, sub: str) -> str:
    from .server import HubError, tree_entries

    sub = names.repo_path(sub.strip("/"), allow_empty=True)
    ctx = _repo_context(store, rtype, repo_id, rev, "files")
    entries = tree_entries(ctx["commit"], sub, recursive=False)
    if entries is None:
        raise HubError(404, f"Entry not found: {sub}", "EntryNotFound")
    for e in entries:
        e["name"] = e["path"].rsplit("/", 1)[-1]
        e.setdefault("lfs", None)
    crumbs, acc = [], []
    for part in sub.split("/") if sub else []:
        acc.append(part)
        crumbs.append({"name": part, "path": "/".join(acc)})
    return _render("tree.html.j2", entries=entries, sub=sub, crumbs=crumbs, **ctx)


def _repo_blob(store: "Store", rtype: str, repo_id: str, rev: str, path: str) -> str:
    from .server import HubError

    path = names.repo_path(path)
    ctx = _repo_context(store, rtype, repo_id, rev, "files")
    e = ctx["commit"]["files"].get(path)
    if e is None:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
    text, image, rendered = None, False, None
    ext = posixpath.splitext(path)[1].lower()
    if ext in (".png", ".jpg", ".jpeg", ".gif", ".webp"):
        image = True
    elif not e["lfs"]:
        raw = store.read_blob(e, MAX_TEXT_VIEW)
        if raw is not None and b"\0" not in raw[:8192]:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
    if text is not None and ext == ".md":
        links = Links(repo_url=ctx["repo_url"], rev=ctx["sha"], on_hub=True, base_dir=posixpath.dirname(path))
        rendered = render_card_body(text, links)["html"]
    crumbs, acc = [], []
    for part in path.split("/"):
        acc.append(part)
        crumbs.append({"name": part, "path": "/".join(acc)})
    return _render("blob.html.j2", path=path, entry=e, text=text, lines=text.splitlines() if text is not None else [], image=image, rendered=rendered, crumbs=crumbs, **ctx)


def _repo_commits(store: "Store", rtype: str, repo_id: str, rev: str) -> str:
    ctx = _repo_context(store, rtype, repo_id, rev, "commits")
    refs = store.refs(store.require(rtype, repo_id))
    tags_at: dict[str, list[str]] = {}
    for t, sha in refs["tags"].items():
        tags_at.setdefault(sha, []).append(t)
    commits = [{"sha": s, "title": c.get("title", ""), "message": c.get("message", ""), "date": c.get("date", ""), "tags": sorted(tags_at.get(s, []))} for s, c in store.history(rtype, repo_id, ctx["sha"])]
    return _render("commits.html.j2", commits=commits, **ctx)


def _repo_commit(store: "Store", rtype: str, repo_id: str, sha: str) -> str:
    names.commit_sha(sha)
    ctx = _repo_context(store, rtype, repo_id, sha, "commits")
    commit = ctx["commit"]
    parent = store.load_commit(rtype, repo_id, commit["parent"]) if commit.get("parent") else {"files": {}}
    before, after = parent["files"], commit["files"]
    changes = []
    for p in sorted(set(before) | set(after)):
        if p not in before:
            changes.append({"path": p, "change": "added", "size": after[p]["size"]})
        elif p not in after:
            changes.append({"path": p, "change": "deleted", "size": before[p]["size"]})
        elif before[p]["sha256"] != after[p]["sha256"]:
            changes.append({"path": p, "change": "modified", "size": after[p]["size"]})
    return _render("commit.html.j2", changes=changes, parent=commit.get("parent"), **ctx)


def _index(store: "Store", kind: str | None, search: str) -> str:
    from .server import HubError, repo_summary

    sections = []
    for rtype in (kind,) if kind else names.REPO_TYPES:
        items = []
        for rid in store.list_repos(rtype):
            if search and search.lower() not in rid.lower():
                continue
            with contextlib.suppress(HubError):
                info = repo_summary(store, rtype, rid)
                items.append({"id": rid, "url": _repo_url(rtype, rid), "modified": info["lastModified"], "pipeline_tag": info.get("pipeline_tag"), "sdk": info.get("sdk"), "private": info["private"]})
        items.sort(key=lambda i: i["modified"] or "", reverse=True)
        sections.append({"kind": rtype, "label": KIND_LABEL[rtype], "repos": items, "section": SECTION[rtype]})
    return _render("index.html.j2", sections=sections, search=search, kind=kind)


# -- previews --------------------------------------------------------------------------------------


class PreviewServer:
    """A card folder served on 127.0.0.1: `/` is the card, `/files/<path>` the folder's files
    (confined to it). `url`, `stop()`, and a context manager."""

    def __init__(self, folder: Path, readme: Path, port: int = 0):
        self.folder, self.readme = folder.resolve(), readme

        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urlsplit(self.path).path
                try:
                    if path == "/":
                        body = render_card_html(outer.readme.read_text(encoding="utf-8"), asset_prefix="/files/").encode()
                        return self._reply(200, body, "text/html; charset=utf-8")
                    if path.startswith("/files/"):
                        rel = names.repo_path(posixpath.normpath(unquote(path[len("/files/"):], errors="strict")))
                        target = names.confined(outer.folder, *rel.split("/"))
                        if target.is_file():
                            from .server import _CONTENT_TYPES

                            ctype = _CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream")
                            return self._reply(200, target.read_bytes(), ctype)
                except (names.BadName, names.OutsideRoot, UnicodeDecodeError, OSError):
                    pass
                self._reply(404, b"not found", "text/plain; charset=utf-8")

            def _reply(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hubkit-card-preview", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "PreviewServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def preview_server(path: str | Path, port: int = 0) -> PreviewServer:
    """Serve one card (a README.md, or a folder holding one, with its results.png) on
    127.0.0.1 and return the running server (`.url`, `.stop()`). The README is read on every
    request, so an edited card shows on reload. Raises FileNotFoundError without a README."""
    path = Path(path)
    readme = path / "README.md" if path.is_dir() else path
    if not readme.is_file():
        raise FileNotFoundError(f"no README.md at {path}")
    return PreviewServer(readme.parent, readme, port)


def write_preview(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the standalone preview page of a card (a README.md or its folder) next to it
    (`preview.html`, or `out`) and return its path."""
    path = Path(path)
    readme = path / "README.md" if path.is_dir() else path
    target = Path(out) if out else readme.parent / "preview.html"
    rel = os.path.relpath(readme.parent.resolve(), target.parent.resolve())
    prefix = "" if rel == "." else quote(Path(rel).as_posix()) + "/"
    target.write_text(render_card_html(readme.read_text(encoding="utf-8"), asset_prefix=prefix), encoding="utf-8")
    return target

