"""What a quantized artifact's card shows besides its specs: a table of its files (the `files`
part), how to run them (`usage`), and the card of the model it quantizes (`upstream`).

Every block is there only when it is true for the files present: the llama.cpp commands for a
GGUF language model, ollama's `hf.co/...:TAG` for a published file that is not split (ollama
cannot pull split GGUFs), transformers' `gguf_file=` loader for an architecture and tensor types
it can read (it cannot read split files either).
"""

from __future__ import annotations

import contextvars
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..gguf import PROJECTOR_ARCHITECTURES, SPLIT_NAME, TRANSFORMERS_GGUF_ARCHITECTURES, TRANSFORMERS_GGUF_TENSOR_TYPES, name_quant_label
from ..manifest import Artifact, Manifest

HUB = "https://huggingface.co"
# Set while the upstream card is rendered inside a quantized one, so that a chain of quantized
# artifacts (or a cycle of base_model ids) embeds one level only.
_EMBEDDING: contextvars.ContextVar[bool] = contextvars.ContextVar("hubkit_embedding_upstream", default=False)
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})(\s)")
_HUBKIT_COMMENT = re.compile(r"<!-- /?hubkit:[^>]*-->\n?")


def size_text(n: int) -> str:
    """Bytes as GGUF cards write them (decimal units): 4.08 GB, 96.9 KB."""
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}" if unit in ("TB", "GB") else f"{n / div:.1f} {unit}"
    return f"{n} B"


def _is_split(m: dict) -> bool:
    return len(m.get("parts") or []) > 1


def _is_projector(m: dict) -> bool:
    return (m.get("architecture") or "") in PROJECTOR_ARCHITECTURES


def _file_link(repo: str | None, path: str) -> str:
    return f"[{path}]({HUB}/{repo}/blob/main/{path})" if repo else f"`{path}`"


def _bits(m: dict, facts: dict) -> tuple[str | None, str | None]:
    """(cell, how) for a file's bits per weight: from its tensor table when read, else from its
    size over the parameter count (marked ≈), else unknown."""
    if m.get("bits_per_weight") is not None:
        return f"{m['bits_per_weight']:.2f}", "tensors"
    params = m.get("params") or facts.get("params")
    if m.get("size") and params:
        return f"≈ {8 * m['size'] / params:.2f}", "size"
    return None, None


def file_table(facts: dict, repo: str | None) -> tuple[dict | None, list[str], list[dict]]:
    """The files table ({"header", "rows"}), the notes under it, and the models in table order
    (biggest first, as readers compare quality against size)."""
    models = sorted(facts.get("models") or [], key=lambda m: (-(m.get("size") or -1), m["path"]))
    if not models:
        return None, [], []
    read = (facts.get("provenance") or {}).get("source") != "author"
    unknown = "not recorded" if read else "not stated"
    columns = {"quant": False, "bits": False, "size": False, "tensors": False}
    methods: set[str] = set()
    cells = []
    for m in models:
        quant = m.get("quant_type")
        if _is_projector(m):
            quant = f"{quant} (vision projector)" if quant else "vision projector"
        bits, how = _bits(m, facts)
        if how:
            methods.add(how)
        types = sorted((m.get("tensor_types") or {}).items(), key=lambda kv: (-kv[1], kv[0]))  # JSON may have sorted the keys
        tensors = ", ".join(f"{t} ×{n}" for t, n in types)
        name = _file_link(repo, m["path"]) + (f" + {len(m['parts']) - 1} more parts" if _is_split(m) else "")
        row = {"file": name, "quant": quant, "bits": bits, "size": size_text(m["size"]) if m.get("size") else None, "tensors": tensors or None}
        for key in columns:
            columns[key] = columns[key] or row[key] is not None
        cells.append(row)
    titles = {"quant": "quant type", "bits": "bits per weight", "size": "size", "tensors": "tensors by type"}
    shown = [k for k in columns if columns[k]]
    table = {
        "header": ["file"] + [titles[k] for k in shown],
        "rows": [[row["file"]] + [row[k] if row[k] is not None else unknown for k in shown] for row in cells],
    }
    notes = []
    if "tensors" in methods:
        notes.append(
            "Bits per weight: 8 × the bytes of all tensors ÷ the parameter count, both from the file's tensor table "
            "(the figure llama.cpp reports as BPW). A file is a little bigger than its tensors: it also holds the metadata and the tokenizer."
        )
    if "size" in methods:
        rounded = facts.get("params_approximate") or any(m.get("params_approximate") for m in models)
        approx = " The parameter count is itself a rounded figure." if rounded else ""
        notes.append(
            "Bits per weight marked ≈: 8 × the file size ÷ the stated parameter count, so they include the metadata and "
            f"the tokenizer and slightly overstate the weights' own bits.{approx}"
        )
    if any(_is_split(m) for m in models):
        notes.append("A file with more parts is one model split by llama.cpp's gguf-split: download every part; the size is all parts together.")
    return table, notes, models


def _example(models: list[dict]) -> dict | None:
    """The file the usage blocks name: Q4_K_M when there is one (ollama's default and the usual
    recommendation), else the smallest."""
    if not models:
        return None
    q4 = [m for m in models if (m.get("quant_type") or "").upper() == "Q4_K_M"]
    if q4:
        return q4[0]
    return min(models, key=lambda m: (m.get("size") or float("inf"), m["path"]))


def _download(repo: str, m: dict) -> str:
    if not _is_split(m):
        return f"hf download {repo} {m['path']} --local-dir ."
    parent = PurePosixPath(m["path"]).parent
    prefix = SPLIT_NAME.match(PurePosixPath(m["path"]).name)["prefix"]
    pattern = f"{prefix}-*-of-{len(m['parts']):05d}.gguf"
    return f'hf download {repo} --include "{pattern if str(parent) == "." else f"{parent}/{pattern}"}" --local-dir .'


def _llama_cpp(models: list[dict], repo: str | None) -> dict | None:
    runnable = [m for m in models if not _is_projector(m)]
    ex = _example(runnable)
    if ex is None:
        return None
    chat = ex.get("has_chat_template")
    return {
        "file": ex["path"],
        "split": _is_split(ex),
        "parts": len(ex.get("parts") or [ex["path"]]),
        "hub": bool(repo),
        "download": _download(repo, ex) if repo else None,
        "chat": bool(chat),
        "chat_known": chat is not None,
        "others": len(runnable) > 1,
        "projectors": [m["path"] for m in models if _is_projector(m)],
    }


def _ollama(models: list[dict], repo: str | None) -> dict | None:
    if not repo:
        return None
    runnable = [m for m in models if not _is_projector(m)]
    # the Hub resolves hf.co/owner/name:TAG among the repo's top-level files; ollama cannot pull split ones
    eligible = [m for m in runnable if not _is_split(m) and "/" not in m["path"]]
    if not eligible:
        return None
    labels = [name_quant_label(PurePosixPath(m["path"]).name) for m in models]
    tags = {}
    for m in eligible:
        label = name_quant_label(PurePosixPath(m["path"]).name)
        # the Hub finds a file by the quant label in its name; the full file name always works
        tags[m["path"]] = label if label is not None and labels.count(label) == 1 else m["path"]
    ex = _example(eligible)
    return {
        "tag": tags[ex["path"]],
        "file": ex["path"],
        "other_tags": [tags[m["path"]] for m in eligible if m is not ex],
        "skipped": [[m["path"], f"split into {len(m['parts'])} parts" if _is_split(m) else "in a folder"] for m in runnable if m not in eligible],
    }


def _transformers_problem(m: dict) -> str | None:
    """Why transformers' GGUF loader cannot load this file, or None when it can."""
    if _is_split(m):
        return "split"
    arch = m.get("architecture")
    if not arch:
        return "architecture not known"
    if arch not in TRANSFORMERS_GGUF_ARCHITECTURES:
        return f"architecture {arch}"
    types = set(m.get("tensor_types") or {})
    if not types:
        return "tensor types not known"
    unread = sorted(types - TRANSFORMERS_GGUF_TENSOR_TYPES)
    return f"tensor type{'s' if len(unread) > 1 else ''} {', '.join(unread)}" if unread else None


def _transformers(models: list[dict], repo: str) -> dict | None:
    ok = [m for m in models if _transformers_problem(m) is None]
    ex = _example(ok)
    if ex is None:
        return None
    return {
        "repo": repo,
        "file": ex["path"],
        "tokenizer": bool(ex.get("has_tokenizer")),
        "others": [m["path"] for m in ok if m is not ex],
        "not_loadable": [[m["path"], _transformers_problem(m)] for m in models if not _is_projector(m) and _transformers_problem(m)],
    }


def _transformers_checkpoint(facts: dict, repo: str) -> dict | None:
    quant = facts.get("quantization") or {}
    if facts.get("kind") != "checkpoint" or not quant.get("quant_method"):
        return None
    return {"repo": repo, "method": quant["quant_method"], "bits": quant.get("bits")}


def embed_card(text: str) -> str:
    """Another card's markdown made into a section of this one: front matter dropped (every
    block of it), hubkit's markers dropped (they belong to that card's own checks), headings
    moved down so that its top level sits under this card's `##`."""
    text = text.replace("\r\n", "\n").lstrip("\ufeff")
    while True:
        m = re.match(r"\s*---\n.*?\n---[ \t]*(?:\n|$)", text, re.DOTALL)
        if not m:
            break
        text = text[m.end() :]
    text = _HUBKIT_COMMENT.sub("", text)
    lines, fenced, levels = text.split("\n"), False, []
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (h := _HEADING.match(line)):
            levels.append(len(h[1]))
    shift = max(0, 3 - min(levels)) if levels else 0
    out, fenced = [], False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        elif shift and not fenced and (h := _HEADING.match(line)):
            line = "#" * min(6, len(h[1]) + shift) + line[len(h[1]) :]
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def upstream_card(manifest: Manifest, art: Artifact, runs_dir: Path, template_dir: str | None) -> dict | None:
    """The card of the model this artifact quantizes, kept as a section: the card hubkit renders
    for it when it is an artifact of the same manifest (the one whose repo_id is this artifact's
    base_model), else the README.md next to its weights (base_model_path); None without either."""
    if _EMBEDDING.get() or not art.base_model:
        return None
    parent = next((n for n, a in manifest.artifacts.items() if a is not art and a.repo_id == art.base_model), None)
    if parent is not None:
        from . import render_card

        token = _EMBEDDING.set(True)
        try:
            text = render_card(manifest, parent, runs_dir=runs_dir, template_dir=template_dir).text
        finally:
            _EMBEDDING.reset(token)
        body = embed_card(text).replace("**this model**", "**the original model**")
        return {"repo": art.base_model, "body": body, "source": "manifest", "name": parent}
    base_dir = manifest.resolve(art.base_model_path) if art.base_model_path else None
    readme = base_dir / "README.md" if base_dir is not None else None
    if readme is not None and readme.is_file():
        try:
            body = embed_card(readme.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None
        if body:
            return {"repo": art.base_model, "body": body, "source": "readme", "name": None}
    return None


def quantized_view(manifest: Manifest, name: str | None, art: Artifact | None, facts: dict | None, runs_dir: Path, template_dir: str | None) -> dict | None:
    """Everything the quantized card's own partials read (`quantized` in the template context);
    None for other kinds."""
    if art is None or art.kind != "quantized":
        return None
    from . import card_layout

    repo = art.repo_id
    facts = facts or {}
    table, notes, models = file_table(facts, repo) if facts.get("kind") == "gguf" else (None, [], [])
    return {
        "files": table,
        "file_notes": notes,
        "llama_cpp": _llama_cpp(models, repo),
        "ollama": _ollama(models, repo),
        "transformers": _transformers(models, repo or name) if models else _transformers_checkpoint(facts, repo or name),
        # an upstream card the manifest names (card.upstream_file) wins: do not render another
        "upstream": None if card_layout(manifest, art).upstream_file else upstream_card(manifest, art, runs_dir, template_dir),
    }
