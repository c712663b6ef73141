"""`hubkit card --check`: a card's metadata, its numbers, and the records behind them.

Checks that the front matter parses back with huggingface_hub to what was rendered, that no local
path sits where a Hub id belongs, that every number in the results tables is backed by a run or a
claim, that every headline number of the latest records is on the card (on disk too) under its
few-shot setting, that no NaN slipped through, and that the records are whole and sealed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..hub.rules import HUB_LICENSES, REPO_ID
from ..manifest import Manifest

RESULTS_BEGIN, RESULTS_END = "<!-- hubkit:results -->", "<!-- /hubkit:results -->"
INPUTS_MARK = "hubkit:inputs"
_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt", ".arrow", ".safetensors", ".bin", ".gz", ".zip", ".tar")
_NUMBER = re.compile(r"(?<![\w.`/-])[-+]?\d[\d,]*(?:\.\d+)?(?![\w.`/-])")
_NAN = re.compile(r"(?<![\w])(?:nan|NaN|inf|-inf|Infinity)(?![\w])")


def looks_local(value: str, root: Path) -> bool:
    """A path rather than a Hub id: not owner/name, starts like a path, names a file, or exists."""
    if not REPO_ID.match(value) or value.startswith((".", "/", "~")) or value.lower().endswith(_FILE_SUFFIXES):
        return True
    return (root / value).exists() or Path(value).expanduser().exists()


def model_index_values(meta: dict) -> list:
    out = []
    for block in meta.get("model-index") or []:
        for res in block.get("results") or []:
            ds = res.get("dataset") or {}
            for m in res.get("metrics") or []:
                out.append((ds.get("name"), ds.get("type"), ds.get("config"), ds.get("split"), json.dumps(ds.get("args"), sort_keys=True), m.get("type"), m.get("value")))
    return sorted(out, key=str)


def _parsed_values(eval_results) -> list:
    return sorted(
        ((r.dataset_name, r.dataset_type, r.dataset_config, r.dataset_split, json.dumps(r.dataset_args, sort_keys=True), r.metric_type, r.metric_value) for r in eval_results or []),
        key=str,
    )


def results_block(text: str) -> str:
    return "\n".join(re.findall(re.escape(RESULTS_BEGIN) + r"(.*?)" + re.escape(RESULTS_END), text, re.DOTALL))


# Columns that name things rather than hold numbers: their digits are names ("Table 2 of the
# paper", "Llama-3-8B", "agrees (1.2σ)"), not values to back.
_LABEL_COLUMNS = {"model", "source", "verdict", "task", "domain", "subtask", "stage", "setting", "data", "#", "method", "teacher", "data from", "file"}


def unbacked_numbers(card) -> list[str]:
    """Numbers in the results section that no run or claim produced (e.g. typed into a template)."""
    problems = []
    lines = results_block(card.text).splitlines()
    header: list[str] = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if i + 1 < len(lines) and lines[i + 1].startswith("|") and set(lines[i + 1]) <= set("|-: "):
            header = [c.lower() for c in cells]
            continue
        for j, c in enumerate(cells):
            if j == 0 or (j < len(header) and header[j] in _LABEL_COLUMNS):
                continue  # the row label, and columns of names
            if "run `" in c or c in ("claimed", "reference only") or c.startswith("unavailable:"):
                continue
            for num in _NUMBER.findall(c):
                n = num.lstrip("+")
                if n not in card.numbers and n.rstrip("%") not in card.numbers:
                    problems.append(f"results table shows {num!r} ({c!r}), which no run record or claim backs")
    return problems


def _sections(text: str) -> dict[str, str]:
    """'### title' -> the text under it, within the results block."""
    block = results_block(text)
    parts = re.split(r"^### (.+)$", block, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def missing_headlines(card, text: str) -> list[str]:
    """Headline numbers of the card's records that `text` does not show under their task and
    few-shot setting (a template that drops rows, a stale or hand-edited README)."""
    problems = []
    sections = _sections(text)
    single = results_block(text)
    for h in card.headlines:
        title = h.title
        body = sections.get(title, single if len(sections) <= 1 and not sections else None)
        if body is None:
            problems.append(f"no results table titled {title!r} for {h.subject}'s {h.metric_label} ({h.text}, run {h.cell.record.run_id})")
        elif not re.search(r"(?<![\d.])" + re.escape(h.text) + r"(?![\d])", body):
            problems.append(f"{title}: {h.subject}'s {h.metric_label} {h.text} (run {h.cell.record.run_id}) is not on the card")
    return problems


def check_card(manifest: Manifest, card, existing: Path | None = None) -> list[str]:
    """Problems with a rendered card (and, given the README on disk, with that file)."""
    from huggingface_hub import ModelCard

    problems: list[str] = []
    where = f"{card.name}"
    parsed_card = ModelCard(card.text)
    parsed = parsed_card.data.to_dict()
    for key in ("base_model", "license", "base_model_relation", "datasets", "library_name"):
        if parsed.get(key) != card.metadata.get(key):
            problems.append(f"{where}: front matter {key}: parsed {parsed.get(key)!r}, rendered {card.metadata.get(key)!r}")
    if _parsed_values(parsed_card.data.eval_results) != model_index_values(card.metadata):
        problems.append(f"{where}: front matter model-index does not parse back to the same values")
    art = manifest.artifacts.get(card.name)
    if art is not None and art.kind in ("adapter", "merged", "quantized") and not card.metadata.get("base_model"):
        problems.append(
            f"{where}: no base model Hub id: set artifacts.{card.name}.base_model to the parent's 'owner/name' "
            "(the card's metadata, model tree and usage need it; a local base_model_path is not enough)"
        )
    lic = parsed.get("license")
    if not lic:
        problems.append(f"{where}: no license in the front matter (project.license)")
    elif lic not in HUB_LICENSES:
        problems.append(f"{where}: license {lic!r} is not on the Hub's list; use 'other' with license_name and license_link")
    bases = parsed.get("base_model")
    for b in bases if isinstance(bases, list) else ([bases] if bases else []):
        if looks_local(str(b), manifest.root):
            problems.append(f"{where}: base_model {b!r} is a local path, not a Hub id")
    for d in parsed.get("datasets") or []:
        if looks_local(str(d), manifest.root):
            problems.append(f"{where}: datasets entry {d!r} is a local path, not a Hub id")
    for _, _, _, _, _, metric, value in model_index_values(card.metadata):
        if not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
            problems.append(f"{where}: model-index {metric} has value {value!r}, not a finite number")
    shown = re.sub(r"unavailable: [^|]*", "", results_block(card.text))  # reasons may quote a NaN
    if _NAN.search(shown):
        problems.append(f"{where}: the results show a NaN or infinite value")
    problems += [f"{where}: {p}" for p in unbacked_numbers(card)]
    problems += [f"{where}: {p}" for p in missing_headlines(card, card.text)]
    problems += [f"{where}: {p}" for p in card.record_problems]
    problems += [f"{where}: {w}" for w in card.warnings]
    if existing is not None:
        if not existing.is_file():
            problems.append(f"{where}: {existing} does not exist (run `hubkit card`)")
        else:
            text = existing.read_text(encoding="utf-8")
            m = re.search(rf"<!-- {INPUTS_MARK} ([0-9a-f]+)", text)
            if not m or m.group(1) != card.inputs_digest:
                problems.append(f"{where}: {existing} is stale: the manifest, run records or templates changed since it was rendered (run `hubkit card`)")
            problems += [f"{where}: {existing}: {p}" for p in missing_headlines(card, text)]
            for run_id in sorted(set(re.findall(r"run `([^`]+)`", results_block(text)))):
                if run_id not in card.run_ids:
                    problems.append(f"{where}: {existing} cites run {run_id}, which is not among the current records (deleted, damaged, or superseded: run `hubkit card`)")
    return list(dict.fromkeys(problems))
