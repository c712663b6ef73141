"""Read real Hugging Face model cards: front matter, sections, tables, model-index, pins, commands.

`hubkit import README.md` turns an existing card into a manifest draft and `hubkit verify`
re-checks the numbers a card claims. Both start here:

- `parse_card(text)` -> ParsedCard: everything a card states, with line numbers, nothing invented.
  It tolerates what real cards do: no front matter, a blank line before it, CRLF line endings,
  several stacked front-matter blocks, HTML headings, and cards pasted as plain text (a rendered
  Hub page copied without markdown, like the seeds in /work/shared/seeds).
- `claims_from_card(parsed)` -> ClaimDraft list: every number of the results tables and of
  model-index, with subject, lm-eval task name (display name kept), metric (and whether it was
  guessed), the value exactly as written plus its number, unit and stderr, few-shot count, table
  orientation and source.
- `manifest_draft(parsed)` -> (manifest mapping that validates as hubkit.manifest.Manifest, TODO
  list): what hubkit cannot know from a card (artifact paths, lineage, authors) is never made up;
  it is listed in the TODO list instead.

Front matter goes through PyYAML the way huggingface_hub reads it, and model-index results through
huggingface_hub's own `model_index_to_eval_results`, so the numbers are the ones the Hub shows.
"""

from __future__ import annotations

import html
import re
import shlex
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, Field

from .errors import CardError
from .lmeval_command import (
    CommandLocation,
    LmEvalCommand,
    eval_setup_gaps,
    find_lm_eval_commands,
    parse_lm_eval_command,
    pins_mapping,
    redact_command,
    to_eval_setup,
)
from .secrets import redact_text

# -- result types ------------------------------------------------------------------------------------


class Link(BaseModel):
    text: str
    url: str
    line: int


class Section(BaseModel):
    """A heading and the markdown under it, up to the next heading of any level."""

    level: int = Field(description="1-6 for headings; 0 for text before the first heading.")
    title: str = Field(description="Heading text without markdown emphasis.")
    title_raw: str
    line: int = Field(description="1-based line of the heading in the card (after CRLF normalisation).")
    body: str
    path: list[str] = Field(default_factory=list, description="Titles of the enclosing headings, outermost first.")


class Table(BaseModel):
    """A table as written: header and rows of cell text (markdown kept), where it is, and the
    caption line just above it / note line just below it when there is one."""

    index: int
    line: int
    section: str | None = None
    section_path: list[str] = Field(default_factory=list)
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None
    note: str | None = None
    form: Literal["markdown", "text"] = "markdown"
    kind: Literal["results", "other"] = "other"
    kind_reason: str = ""
    text: str = Field("", description="The table's lines as written.")


class ModelIndexResult(BaseModel):
    """One metric of the card's model-index, as huggingface_hub parses it."""

    model_name: str
    task_type: str
    task_name: str | None = None
    dataset_type: str
    dataset_name: str
    dataset_config: str | None = None
    dataset_split: str | None = None
    dataset_args: dict[str, Any] | None = None
    metric_type: str
    metric_name: str | None = None
    value: Any
    source_name: str | None = None
    source_url: str | None = None
    verified: bool | None = None
    num_fewshot: int | None = Field(None, description="From dataset args num_few_shot/num_fewshot, else the dataset name ('(25-Shot)').")


class Pin(BaseModel):
    """A package version the card says the numbers were produced with."""

    package: str = Field(description="Normalised distribution name: lowercase, '-' for '_' (lm_eval -> lm-eval).")
    spec: str = Field(description="Version specifier: '==4.49.0', '>=0.4', or '@ git+https://...@ref'.")
    version: str | None = None
    kind: Literal["pip", "requirements", "tested-on", "framework-versions", "git-checkout", "bare"]
    text: str = Field(description="The line as written (tokens redacted).")
    line: int


class BibEntry(BaseModel):
    key: str
    type: str
    bibtex: str
    line: int
    complete: bool = Field(True, description="False when the braces never close (a broken entry in the card).")


class DocumentedCommand(BaseModel):
    command: LmEvalCommand
    location: CommandLocation
    section: str | None = None


class ParsedCard(BaseModel):
    """Everything a card states, as found (see module docstring)."""

    metadata: dict[str, Any] = Field(default_factory=dict, description="Front matter, all stacked blocks merged (the first block wins a key).")
    hub_metadata: dict[str, Any] = Field(default_factory=dict, description="The first front-matter block alone: what the Hub reads.")
    front_matter_blocks: int = 0
    line_endings: Literal["lf", "crlf", "cr"] = "lf"
    text_mode: bool = Field(False, description="The card has no markdown structure (a rendered page pasted as text); headings and tables were inferred from layout.")
    title: str | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    license_text: str | None = Field(None, description="A 'License:' line or License section of the body.")
    language: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    base_models: list[str] = Field(default_factory=list, description="base_model from the front matter, duplicates removed, order kept.")
    library_name: str | None = None
    pipeline_tag: str | None = None
    model_names: list[str] = Field(default_factory=list, description="Names the card uses for its own model (title, model-index name, model_name, repo id).")
    repo_id: str | None = None
    sections: list[Section] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    model_index: list[ModelIndexResult] = Field(default_factory=list)
    pins: list[Pin] = Field(default_factory=list)
    commands: list[DocumentedCommand] = Field(default_factory=list)
    metric_lines: list[dict[str, Any]] = Field(default_factory=list, description="'name: value' lines of a metrics section (AutoTrain cards).")
    links: list[Link] = Field(default_factory=list)
    bibtex: list[BibEntry] = Field(default_factory=list)
    tested_on: str | None = Field(None, description="Hardware/setup words of a 'Tested on ...' sentence, pins removed.")
    body: str = Field("", description="The card without front matter, LF line endings.")
    body_line: int = Field(1, description="Card line number of the body's first line.")
    problems: list[str] = Field(default_factory=list, description="What could not be read (bad YAML, a model-index huggingface_hub rejects...).")


class ClaimDraft(BaseModel):
    """A number the card claims, with everything known about it and how it was known."""

    subject: str
    this_model: bool = False
    task: str = Field(description="lm-eval task name when the display name maps to one, else the display name.")
    task_display: str
    task_mapped: bool = False
    metric: str | None = None
    metric_display: str | None = None
    metric_guessed: bool = False
    value: float | None = Field(None, description="The number in value_text (None when there is none).")
    value_text: str = Field(description="The cell or value exactly as written.")
    unit: str | None = Field(None, description="'%', 'pp', 'x' or another suffix written after the number.")
    stderr: float | None = None
    num_fewshot: int | None = None
    domain: str | None = None
    orientation: Literal["models-as-rows", "models-as-columns", "single-model", "model-index", "metric-list"]
    origin: Literal["table", "model-index", "metric-list"]
    source: str
    table: int | None = None
    row: int | None = None
    column: int | None = None
    derived: bool = Field(False, description="A difference/flag column (Δ, minus base, usable), not a measurement.")
    baseline: bool = False
    reference_only: bool = False
    links: list[str] = Field(default_factory=list)


class ManifestDraft(NamedTuple):
    manifest: dict
    todo: list[str]


# -- text helpers --------------------------------------------------------------------------------------

_MD_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_BARE_URL = re.compile(r"(?<![(<\"'=])\bhttps?://[^\s<>\"'`)\]]+")
_HTML_TAG = re.compile(r"<[^>]+>")


@lru_cache(maxsize=4096)
def _plain(text: str) -> str:
    """Cell/heading text without markdown: links -> their text, emphasis, code ticks, HTML tags,
    entities and emoji removed, whitespace collapsed."""
    s = text.replace("<br>", " ").replace("<br/>", " ").replace("<br />", " ")
    s = _MD_LINK.sub(lambda m: m.group(1), s)
    s = _HTML_TAG.sub(" ", s)
    s = html.unescape(s)
    s = re.sub(r"(\*\*|__)(.+?)\1", r"\2", s)
    s = re.sub(r"(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\1(?![\w*])", r"\2", s)
    s = s.replace("`", "")
    s = "".join(ch for ch in s if not _is_symbol(ch))
    return re.sub(r"\s+", " ", s).strip()


def _is_symbol(ch: str) -> bool:
    if ch in "±Δ%°":
        return False
    cat = unicodedata.category(ch)
    return cat in ("So", "Cs", "Co") or ord(ch) in (0xFE0F, 0x200D)


_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta"}


@lru_cache(maxsize=4096)
def _norm_name(text: str) -> str:
    s = _plain(text).lower().replace("+", "plus")
    for g, w in _GREEK.items():
        s = s.replace(g, w)
    return re.sub(r"[^a-z0-9]", "", s)


# -- benchmark names -----------------------------------------------------------------------------------

# display name (normalised: lowercase alphanumerics) -> lm-eval task. Only names with one clear
# lm-eval counterpart; everything else keeps its display name and task_mapped=False.
_TASK_ALIASES: dict[str, str] = {}


def _alias(task: str, *names: str) -> None:
    for n in (task, *names):
        _TASK_ALIASES[_norm_name(n)] = task


_alias("arc_challenge", "ARC", "ARC-Challenge", "ARC Challenge", "ARC-C", "ARC (challenge)", "AI2 Reasoning Challenge", "AI2 ARC Challenge", "arc_c")
_alias("arc_easy", "ARC-Easy", "ARC Easy", "ARC-E", "ARC (easy)")
_alias("hellaswag", "HellaSwag", "Hella Swag")
_alias("mmlu", "MMLU", "hendrycksTest", "hendrycksTest-*", "cais/mmlu", "Massive Multitask Language Understanding")
_alias("truthfulqa_mc2", "TruthfulQA (mc2)", "TruthfulQA mc2", "TruthfulQA MC2", "truthfulqa-mc2")
_alias("truthfulqa_mc1", "TruthfulQA (mc1)", "TruthfulQA mc1", "TruthfulQA MC1", "truthfulqa-mc1")
_alias("winogrande", "WinoGrande", "Wino Grande", "winogrande_xl")
_alias("gsm8k", "GSM8K", "GSM8k", "GSM-8K", "GSM 8K")
_alias("gsm8k_cot", "GSM8K CoT", "GSM8K (CoT)")
_alias("drop", "DROP")
_alias("piqa", "PIQA")
_alias("boolq", "BoolQ")
_alias("openbookqa", "OpenBookQA", "OBQA")
_alias("social_iqa", "Social IQA", "SocialIQA", "SIQA")
_alias("triviaqa", "TriviaQA")
_alias("anli", "ANLI")
_alias("bbh", "BBH", "BigBench Hard", "Big-Bench Hard", "BIG-Bench Hard")
_alias("bbh_cot_fewshot", "BigBench Hard CoT", "BBH CoT")
_alias("agieval", "AGIEval", "AGI Eval")
_alias("humaneval", "HumanEval", "Human-Eval", "humaneval-python", "openai_humaneval", "HumanEval (Python)")
_alias("humaneval_plus", "HumanEval+", "HumanEvalPlus", "humanevalplus")
_alias("mbpp", "MBPP")
_alias("mbpp_plus", "MBPP+", "MBPPPlus")
_alias("lambada_openai", "LAMBADA", "lambada_openai")
_alias("sciq", "SciQ")
_alias("copa", "COPA")
_alias("wikitext", "WikiText")
_alias("race", "RACE")
_alias("logiqa", "LogiQA")
_alias("mathqa", "MathQA")
_alias("toxigen", "ToxiGen")
_alias("ifeval", "IFEval")
_alias("gpqa", "GPQA")
_alias("medqa_4options", "MedQA")

# A plain "TruthfulQA" on the Open LLM Leaderboard (and in most cards) is the mc2 score.
_TASK_ALIASES[_norm_name("TruthfulQA")] = "truthfulqa_mc2"
# Words that make a name a benchmark mention even when it maps to no lm-eval task.
_BENCH_WORDS = re.compile(r"(?i)\b(mt-?bench|alpaca ?eval|arena|humaneval|mbpp|gsm|math|bench|eval|qa\b|mmlu|arc\b|toxigen|truthful)")

# Metric display names -> lm-eval metric names.
_METRICS: dict[str, str] = {}
for _m, _names in {
    "acc": ("acc", "accuracy", "acc.", "acc (%)", "accuracy (%)"),
    "acc_norm": ("acc_norm", "normalized accuracy", "accuracy (normalized)", "acc norm", "acc_norm (%)", "norm acc"),
    "exact_match": ("exact_match", "exact match", "em", "exact-match"),
    "pass@1": ("pass@1", "pass@1 (%)", "pass at 1"),
    "pass@10": ("pass@10",),
    "f1": ("f1", "f1 score", "f1-score"),
    "mc1": ("mc1",),
    "mc2": ("mc2",),
    "perplexity": ("perplexity", "ppl"),
    "bleu": ("bleu",),
    "rouge": ("rouge",),
    "score": ("score",),
    "win rate": ("win rate", "win rate %", "win-rate", "winrate"),
    "prompt_level_strict_acc": ("prompt_level_strict_acc", "prompt-level strict acc", "prompt-level strict accuracy", "prompt level strict acc"),
    "inst_level_strict_acc": ("inst_level_strict_acc", "instruction-level strict acc", "inst-level strict acc", "instruction-level strict accuracy"),
    "prompt_level_loose_acc": ("prompt_level_loose_acc", "prompt-level loose acc", "prompt-level loose accuracy"),
    "inst_level_loose_acc": ("inst_level_loose_acc", "instruction-level loose acc", "inst-level loose acc"),
    # GSM8K's filters: the metric is exact_match either way
    "exact_match,strict-match": ("strict-match", "strict match"),
    "exact_match,flexible-extract": ("flexible-extract", "flexible extract"),
}.items():
    for _n in _names:
        _METRICS[_n.lower()] = _m

# What a benchmark's headline number usually is when a card does not say (marked as guessed).
_IMPLIED_METRIC = {
    "arc_challenge": "acc_norm", "arc_easy": "acc", "hellaswag": "acc_norm", "mmlu": "acc", "truthfulqa_mc2": "acc",
    "truthfulqa_mc1": "acc", "winogrande": "acc", "gsm8k": "exact_match", "gsm8k_cot": "exact_match", "drop": "f1",
    "humaneval": "pass@1", "humaneval_plus": "pass@1", "mbpp": "pass@1", "mbpp_plus": "pass@1", "boolq": "acc",
    "piqa": "acc", "openbookqa": "acc_norm", "lambada_openai": "acc", "sciq": "acc",
}

_FEWSHOT = re.compile(r"(?i)(\d+)\s*[- ]?\s*shots?\b|\b(zero)[- ]?shot\b")


def _fewshot_in(text: str) -> int | None:
    m = _FEWSHOT.search(text)
    if not m:
        return None
    return 0 if m.group(2) else int(m.group(1))


@lru_cache(maxsize=4096)
def _metric_of(text: str) -> str | None:
    """The lm-eval metric a display name means (a GSM8K filter name means exact_match)."""
    m = _METRICS.get(_plain(text).lower().strip(" :,;"))
    return m.split(",")[0] if m else None


@lru_cache(maxsize=4096)
def map_task(display: str) -> tuple[str, bool]:
    """(lm-eval task name, True) for a benchmark display name like 'ARC (25-shot)' or 'TruthfulQA
    (MC2) <br>10-shot'; (the cleaned display name, False) when it maps to no lm-eval task."""
    plain = _plain(display)
    name = _FEWSHOT.sub(" ", plain)
    metric_in_parens = re.search(r"\(([^)]*)\)", name)
    candidates = [name]
    if metric_in_parens:
        inner = metric_in_parens.group(1).strip(" ,;")
        outer = (name[: metric_in_parens.start()] + name[metric_in_parens.end() :]).strip()
        candidates = [name, f"{outer} {inner}"]
        # '(acc_norm)' or '()' qualify the benchmark; '(PAL)' names another setup of it
        if not inner or _metric_of(inner) or _metric_of(re.sub(r"\s*%$", "", inner)):
            candidates.append(outer)
    for c in candidates:
        key = _norm_name(c)
        if key in _TASK_ALIASES:
            return _TASK_ALIASES[key], True
    cleaned = re.sub(r"\s*\(\s*\)\s*", " ", name).strip(" -:,")
    return re.sub(r"\s+", " ", cleaned) or plain, False


@lru_cache(maxsize=4096)
def find_task_in_text(text: str) -> str | None:
    """The lm-eval task a longer text (a section title, a caption) names, by its longest alias."""
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9+*/_-]*", _plain(text))
    best: tuple[int, str] | None = None
    for n in range(min(4, len(words)), 0, -1):
        for i in range(len(words) - n + 1):
            key = _norm_name(" ".join(words[i : i + n]))
            if key in _TASK_ALIASES and (best is None or len(key) > best[0]):
                best = (len(key), _TASK_ALIASES[key])
    return best[1] if best else None


# -- values ----------------------------------------------------------------------------------------------

_NUM = r"[+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+\-]?\d+)?"
_VALUE = re.compile(rf"(?P<num>{_NUM})\s*(?P<unit>%|pp\b|x\b|×|pts?\b)?(?:\s*(?:±|\+/-|\+-)\s*(?P<se>{_NUM})\s*(?P<seunit>%|pp\b)?)?")
_MISSING = {"", "-", "—", "–", "n/a", "na", "none", "null", "?", "tbd"}
_SIZE = re.compile(r"^~?\d+(?:\.\d+)?\s*[KMBT]$|^\d+(?:\.\d+)?x\d+(?:\.\d+)?[BM]$", re.IGNORECASE)


class Value(NamedTuple):
    number: float
    unit: str | None
    stderr: float | None


def _to_float(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-"))


@lru_cache(maxsize=4096)
def parse_value(text: str) -> Value | None:
    """The number a cell states: a percentage when one is written ('125/175 (71.43%)' -> 71.43 %),
    else the first number; '± x' gives the stderr. None for empty/dash cells, sizes like '7B'
    and cells without a number."""
    plain = _plain(text)
    if plain.lower() in _MISSING or _SIZE.match(plain):
        return None
    matches = list(_VALUE.finditer(plain))
    if not matches:
        return None
    pick = next((m for m in matches if m.group("unit") == "%"), matches[0])
    unit = pick.group("unit")
    if unit == "×":
        unit = "x"
    se = pick.group("se")
    return Value(_to_float(pick.group("num")), unit, _to_float(se) if se else None)


@lru_cache(maxsize=4096)
def _is_numeric_cell(text: str) -> bool:
    plain = _plain(text)
    v = parse_value(plain)
    if v is None:
        return False
    # mostly a number: what remains after removing the value is a few words at most
    rest = _VALUE.sub("", plain, count=1)
    return len(re.findall(r"[A-Za-z]{3,}", rest)) <= 2 and not re.search(r"[A-Za-z]", plain[:1])


# -- front matter -----------------------------------------------------------------------------------------


def _front_matter(lines: list[str], problems: list[str]) -> tuple[list[dict], int]:
    """The stacked YAML blocks at the top and the index of the first body line."""
    blocks: list[dict] = []
    i = 0
    while True:
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or lines[j].rstrip() != "---":
            break
        k = j + 1
        while k < len(lines) and lines[k].rstrip() != "---":
            k += 1
        if k >= len(lines):
            break
        try:
            data = yaml.safe_load("\n".join(lines[j + 1 : k]))
        except yaml.YAMLError as exc:
            problems.append(f"front matter block at line {j + 1} is not valid YAML: {str(exc).splitlines()[0]}")
            break
        if data is None:
            data = {}
        if not isinstance(data, dict):
            break
        blocks.append(data)
        i = k + 1
    return blocks, (i if blocks else 0)


# -- markdown scan ----------------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_HTML_H = re.compile(r"^\s*(?:<p>\s*)?<h([1-6])[^>]*>(.*?)</h\1>", re.IGNORECASE)
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_DELIM = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*([-*+•]|\d+[.)])\s")


def _split_row(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells, buf, i = [], [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] == "|":
            buf.append("|")
            i += 2
            continue
        if s[i] == "|":
            cells.append("".join(buf).strip())
            buf = []
        else:
            buf.append(s[i])
        i += 1
    cells.append("".join(buf).strip())
    return cells


class _Scan(NamedTuple):
    headings: list[tuple[int, int, str]]  # (line index, level, raw title)
    tables: list[tuple[int, int, list[str], list[list[str]]]]  # (first, last line index, header, rows)
    code: list[tuple[int, int, str, list[str]]]  # fenced blocks: (open, close line index, info, lines)
    prose: list[int]  # line indices outside code, tables and comments


def _scan(lines: list[str], start: int) -> _Scan:
    headings, tables, code, prose = [], [], [], []
    i = start
    in_comment = False
    while i < len(lines):
        line = lines[i]
        if in_comment:
            if "-->" in line:
                in_comment = False
            i += 1
            continue
        if line.lstrip().startswith("<!--") and "-->" not in line:
            in_comment = True
            i += 1
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)
            j = i + 1
            while j < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
                j += 1
            code.append((i, min(j, len(lines) - 1), m.group(2).strip(), lines[i + 1 : j]))
            i = j + 1
            continue
        a = _ATX.match(line)
        if a:
            headings.append((i, len(a.group(1)), (a.group(2) or "").strip()))
            i += 1
            continue
        h = _HTML_H.match(line)
        if h:
            headings.append((i, int(h.group(1)), h.group(2).strip()))
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _DELIM.match(lines[i + 1]) and "-" in lines[i + 1]:
            header = _split_row(line)
            rows = []
            j = i + 2
            while j < len(lines) and lines[j].strip() and "|" in lines[j]:
                cells = _split_row(lines[j])
                cells = (cells + [""] * len(header))[: max(len(header), len(cells))]
                rows.append(cells)
                j += 1
            tables.append((i, j - 1, header, rows))
            i = j
            continue
        s = _SETEXT.match(line)
        if s and i > start and lines[i - 1].strip() and (i - 1) in prose and not _LIST_ITEM.match(lines[i - 1]) and "|" not in lines[i - 1]:
            prose.remove(i - 1)
            headings.append((i - 1, 1 if s.group(1)[0] == "=" else 2, lines[i - 1].strip()))
            i += 1
            continue
        prose.append(i)
        i += 1
    headings.sort()
    return _Scan(headings, tables, code, prose)


# -- plain-text cards (rendered pages pasted as text) ---------------------------------------------------

_TEXT_VALUE_TOKEN = re.compile(rf"^(?:{_NUM}%?|True|False)$")
_UNIT_TOKENS = {"pp", "%", "x", "pts"}


def _text_headings(lines: list[str], start: int) -> list[tuple[int, int, str]]:
    """Headings of a card pasted as text: the first line when it stands alone (the title), then
    short capitalised lines between blank lines that are not sentences, list items or code."""
    out = []
    first = next((i for i in range(start, len(lines)) if lines[i].strip()), None)
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if not s:
            continue
        alone_after = i + 1 >= len(lines) or not lines[i + 1].strip()
        if i == first and alone_after:
            out.append((i, 1, s))
            continue
        alone = (i == start or not lines[i - 1].strip()) and alone_after
        if not alone or len(s) > 80 or not s[0].isupper() or lines[i][0] in " \t":
            continue
        if re.search(r"[.,;:!?]$", s) or _LIST_ITEM.match(lines[i]):
            continue
        if re.search(r"[=(){}\[\]]\s*$", s) and not re.search(r"\([^)]*\)$", s):
            continue
        if re.search(r"\b(import|def|return|print)\b|\w\(\)|\.\w+\(", s):
            continue
        out.append((i, 2, s))
    if out and not any(level == 1 for _, level, _ in out):
        # page chrome above the title (a file path, 'X's picture'): the first heading is the title
        out[0] = (out[0][0], 1, out[0][2])
    return out


def _value_groups(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(label tokens, value cells) of a plain-text row, reading values from the right:
    numbers with a trailing unit word ('+6.91 pp') and 'x ± y' pairs are one cell each."""
    i = len(tokens) - 1
    groups: list[str] = []
    while i >= 0:
        tok = tokens[i]
        if tok in _UNIT_TOKENS and i >= 1 and _TEXT_VALUE_TOKEN.match(tokens[i - 1]):
            group = tokens[i - 1 : i + 1]
            i -= 2
        elif _TEXT_VALUE_TOKEN.match(tok):
            group = [tok]
            i -= 1
        else:
            break
        if i >= 1 and tokens[i] in ("±", "+/-") and _TEXT_VALUE_TOKEN.match(tokens[i - 1]):
            group = tokens[i - 1 : i + 1] + group
            i -= 2
        groups.insert(0, " ".join(group))
    return tokens[: i + 1], groups


def _header_groups(line: str) -> list[str]:
    """Header words of a plain-text table: parenthesised words stay with the word before them and
    'Δ'/'vs' with the word after."""
    tokens = line.split()
    out: list[str] = []
    depth = 0
    join_next = False
    for tok in tokens:
        if depth > 0 or (out and tok.startswith("(")) or join_next:
            out[-1] = f"{out[-1]} {tok}"
        else:
            out.append(tok)
        depth += tok.count("(") - tok.count(")")
        join_next = tok in ("Δ", "vs", "vs.", "delta", "Delta")
    return out


def _text_tables(lines: list[str], start: int, heading_lines: set[int]) -> list[tuple[int, int, list[str], list[list[str]]]]:
    out = []
    i = start
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        block = list(range(i, j))
        i = j
        if len(block) < 3 or block[0] in heading_lines:
            continue
        parsed = [_value_groups(lines[k].split()) for k in block[1:]]
        numeric = [p for p in parsed if p[1]]
        if len(numeric) < 2 or len(numeric) < len(parsed) / 2:
            continue
        if any(len(lines[k]) > 200 for k in block):
            continue
        ncols = max(len(p[1]) for p in numeric)
        header_words = _header_groups(lines[block[0]])
        nlabel = max(len(header_words) - ncols, 0)
        if nlabel == 0 and len(header_words) < ncols:
            continue
        label_header = header_words[:nlabel]
        value_header = header_words[nlabel:]
        label_cols = max(nlabel, 1)
        header = (label_header if nlabel else [""]) + value_header
        rows = []
        for labels, values in parsed:
            if nlabel > 1 and len(labels) >= nlabel:
                label_cells = labels[: nlabel - 1] + [" ".join(labels[nlabel - 1 :])]
            else:
                label_cells = [" ".join(labels)] + [""] * (label_cols - 1)
            rows.append(label_cells + values + [""] * (ncols - len(values)))
        out.append((block[0], block[-1], header, rows))
    return out


# -- the parser ---------------------------------------------------------------------------------------------


def parse_card(text: str, *, repo_id: str | None = None) -> ParsedCard:
    """Parse a model card (README.md text, or a card page pasted as plain text).

    `repo_id`, when known (verify knows where the card came from), helps recognise the card's own
    model in comparison tables. Returns a ParsedCard; never raises on odd cards: what cannot be
    read is listed in `problems`.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    endings: Literal["lf", "crlf", "cr"] = "crlf" if "\r\n" in text else ("cr" if "\r" in text else "lf")
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    problems: list[str] = []
    # a token pasted into a card must not travel further (into a manifest, a rendered card, a log)
    scrubbed = redact_command(norm)
    if scrubbed != norm:
        problems.append("the card contains credential-shaped values (HF_TOKEN=..., token=..., hf_...); they were replaced by ***")
        norm = scrubbed
    lines = norm.split("\n")
    blocks, body_start = _front_matter(lines, problems)
    merged: dict[str, Any] = {}
    for b in blocks:
        for k, v in b.items():
            merged.setdefault(k, v)
    card = ParsedCard(
        metadata=merged,
        hub_metadata=blocks[0] if blocks else {},
        front_matter_blocks=len(blocks),
        line_endings=endings,
        body="\n".join(lines[body_start:]),
        body_line=body_start + 1,
        repo_id=repo_id,
        problems=problems,
    )
    problems = card.problems  # the model keeps its own copy of the list it was given
    if len(blocks) > 1:
        problems.append(f"{len(blocks)} stacked front-matter blocks: the Hub reads only the first; keys of the others were merged here")
    _read_metadata(card)

    scan = _scan(lines, body_start)
    text_mode = not scan.headings and not scan.tables and not scan.code
    card.text_mode = text_mode
    headings = scan.headings
    tables_raw = [(a, b, h, r, "markdown") for a, b, h, r in scan.tables]
    end = len(lines)
    if text_mode:
        # a Hub page pasted as text ends with the page's widgets ('Downloads last month', 'Model
        # tree for ...'): not part of the card
        chrome = next((i for i in range(body_start, len(lines)) if lines[i].strip() == "Downloads last month"), None)
        if chrome is not None:
            end = chrome
            problems.append(f"line {chrome + 1} on ('Downloads last month', model tree...) is Hub page chrome, not card text; ignored")
        lines = lines[:end]
        headings = _text_headings(lines, body_start)
        tables_raw = [(a, b, h, r, "text") for a, b, h, r in _text_tables(lines, body_start, {h[0] for h in headings})]
        headings = [h for h in headings if not any(a <= h[0] <= b for a, b, *_ in tables_raw)]

    card.sections = _sections(lines, body_start, headings)
    h1 = [s.title for s in card.sections if s.level == 1 and s.title]
    # an H1 that reads like a name, not a slogan ('Finetune ... 2x faster via Unsloth!')
    card.title = next((t for t in h1 if not re.search(r"[!?.]$", t) and len(t.split()) <= 10), h1[0] if h1 else None)
    for k, (first, last, header, rows, form) in enumerate(tables_raw):
        sec = _section_at(card.sections, first + 1)
        caption, note = _caption_note(lines, first, last, body_start)
        card.tables.append(
            Table(
                index=k, line=first + 1, section=sec.title if sec else None, section_path=(sec.path + [sec.title]) if sec else [],
                header=header, rows=rows, caption=caption, note=note, form=form, text="\n".join(lines[first : last + 1]),
            )
        )
    _read_model_index(card)
    card.model_names = _own_names(card)
    for t in card.tables:
        t.kind, t.kind_reason = _table_kind(t)

    code_lines = {i for a, b, _, _ in scan.code for i in range(a, b + 1)}
    for cmd_text, loc in find_lm_eval_commands(card.body):
        loc = loc.model_copy(update={"line": loc.line + body_start, "end_line": loc.end_line + body_start})
        try:
            parsed = parse_lm_eval_command(cmd_text, variables=loc.variables)
        except ValueError as exc:
            problems.append(f"line {loc.line}: {exc}")
            continue
        sec = _section_at(card.sections, loc.line)
        card.commands.append(DocumentedCommand(command=parsed, location=loc, section=sec.title if sec else None))
    card.pins, card.tested_on = _pins(lines, body_start, scan, text_mode)
    card.links = _links(lines, body_start, code_lines)
    card.bibtex = _bibtex(lines, body_start, scan, text_mode)
    card.metric_lines = _metric_lines(card)
    if card.license is None:
        card.license_text = _license_text(card)
    return card


def read_card(path: str | Path, *, repo_id: str | None = None) -> ParsedCard:
    """`parse_card` on a file, its line endings kept (so CRLF cards say so).

    Raises CardError when the file is missing or is not UTF-8 text.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CardError(f"{path}: cannot read the card ({exc.strerror or exc})", hint="Pass the path of a README.md (a model card).", path=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CardError(f"{path}: not UTF-8 text", hint="A model card is a UTF-8 markdown file (README.md).", path=path) from None
    return parse_card(text, repo_id=repo_id)


def _read_metadata(card: ParsedCard) -> None:
    md = card.metadata

    def as_list(v: Any) -> list[str]:
        if v is None:
            return []
        if isinstance(v, (list, tuple)):
            return [str(x) for x in v if x is not None]
        return [str(v)]

    card.license = str(md["license"]) if md.get("license") is not None else None
    card.license_name = md.get("license_name")
    card.license_link = md.get("license_link")
    card.language = as_list(md.get("language"))
    card.tags = as_list(md.get("tags"))
    card.datasets = as_list(md.get("datasets"))
    card.base_models = list(dict.fromkeys(as_list(md.get("base_model"))))
    card.library_name = md.get("library_name")
    card.pipeline_tag = md.get("pipeline_tag")


def _sections(lines: list[str], start: int, headings: list[tuple[int, int, str]]) -> list[Section]:
    out: list[Section] = []
    stack: list[tuple[int, str]] = []
    bounds = [h[0] for h in headings] + [len(lines)]
    first = headings[0][0] if headings else len(lines)
    pre = "\n".join(lines[start:first]).strip("\n")
    if pre.strip():
        out.append(Section(level=0, title="", title_raw="", line=start + 1, body=pre))
    for n, (idx, level, raw) in enumerate(headings):
        title = _plain(raw).rstrip(":").strip()
        while stack and stack[-1][0] >= level:
            stack.pop()
        body = "\n".join(lines[idx + 1 : bounds[n + 1]])
        # a setext underline belongs to its heading, not to the body
        if idx + 1 < len(lines) and _SETEXT.match(lines[idx + 1]) and not _ATX.match(lines[idx]) and not _HTML_H.match(lines[idx]):
            body = "\n".join(lines[idx + 2 : bounds[n + 1]])
        out.append(Section(level=level, title=title, title_raw=raw, line=idx + 1, body=body.strip("\n"), path=[t for _, t in stack]))
        stack.append((level, title))
    return out


def _section_at(sections: list[Section], line: int) -> Section | None:
    found = None
    for s in sections:
        if s.line <= line:
            found = s
        else:
            break
    return found


def _caption_note(lines: list[str], first: int, last: int, start: int) -> tuple[str | None, str | None]:
    """The line right above a table (no blank line between) and the short note right below it."""
    caption = None
    if first - 1 >= start and lines[first - 1].strip() and not _ATX.match(lines[first - 1]) and "|" not in lines[first - 1]:
        cand = lines[first - 1].strip()
        if len(cand) <= 300 and not _FENCE.match(cand):
            caption = cand
    note = None
    j = last + 1
    if j < len(lines) and lines[j].strip() and "|" not in lines[j] and not _ATX.match(lines[j]):
        note = lines[j].strip()
    else:
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j < len(lines) and j - last <= 2:
            cand = lines[j].strip()
            if re.match(r"(?i)^(\*|_|†|‡|¹|note|table|source|\(|results? (are|were|from))", cand) and len(cand) <= 300 and "|" not in cand:
                note = cand
    return caption, note


def _read_model_index(card: ParsedCard) -> None:
    mi = card.metadata.get("model-index")
    if not mi:
        return
    from huggingface_hub.repocard_data import model_index_to_eval_results

    # huggingface_hub returns one name for the whole index: parse entry by entry to keep each
    for entry in mi if isinstance(mi, list) else [mi]:
        try:
            name, results = model_index_to_eval_results([entry])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            card.problems.append(f"model-index entry {entry.get('name') if isinstance(entry, dict) else entry!r} is not readable by huggingface_hub: {type(exc).__name__}: {exc}")
            continue
        for r in results:
            args = r.dataset_args or {}
            shots = None
            for key in ("num_few_shot", "num_fewshot", "n_shot", "num_shots", "fewshot"):
                if key in args:
                    try:
                        shots = int(args[key])
                    except (TypeError, ValueError):
                        pass
                    break
            if shots is None:
                shots = _fewshot_in(r.dataset_name or "")
            card.model_index.append(
                ModelIndexResult(
                    model_name=str(name), task_type=r.task_type, task_name=r.task_name, dataset_type=str(r.dataset_type), dataset_name=str(r.dataset_name),
                    dataset_config=r.dataset_config, dataset_split=r.dataset_split, dataset_args=r.dataset_args, metric_type=str(r.metric_type),
                    metric_name=r.metric_name, value=r.metric_value, source_name=r.source_name, source_url=r.source_url, verified=r.verified,
                    num_fewshot=shots,
                )
            )


def _own_names(card: ParsedCard) -> list[str]:
    names = []
    if card.repo_id:
        names += [card.repo_id, card.repo_id.split("/")[-1]]
    if card.title:
        t = re.sub(r"(?i)^model card for\s+", "", card.title)
        t = re.sub(r"\s*\((?:lora|qlora|peft)?\s*adapter\)\s*$", "", t, flags=re.I)
        names.append(t)
        if "/" in t and " " not in t:
            names.append(t.split("/")[-1])
    names += [r.model_name for r in card.model_index]
    if card.metadata.get("model_name"):
        names.append(str(card.metadata["model_name"]))
    names = [n for n in names if n and n.lower() not in ("model id", "model card", "model")]
    return list(dict.fromkeys(names))


def _is_own(label: str, names: list[str]) -> bool:
    low = _plain(label).lower()
    if re.search(r"\bthis (model|adapter|checkpoint|work)\b|\(ours\)|\bours\b", low):
        return True
    key = _norm_name(re.sub(r"\([^)]*\)", "", label))
    if not key:
        return False
    words = _name_words(re.sub(r"\([^)]*\)", "", label))
    for n in names:
        if key == _norm_name(n):
            return True
        # an abbreviated last word ('Phi-3-Mini-4K-Ins' for 'Phi-3-Mini-4K-Instruct'); a longer
        # name that merely starts with this one ('Mistral-7B-v0.1-NCA-ARC') is another model
        other = _name_words(n)
        if len(words) == len(other) >= 2 and words[:-1] == other[:-1] and min(len(words[-1]), len(other[-1])) >= 2:
            if words[-1].startswith(other[-1]) or other[-1].startswith(words[-1]):
                return True
    return False


def _name_words(text: str) -> list[str]:
    s = _plain(text).lower()
    for g, w in _GREEK.items():
        s = s.replace(g, w)
    return [w for w in re.split(r"[^a-z0-9]+", s) if w]


# -- table kinds and claims ---------------------------------------------------------------------------------

_OTHER_SECTION = re.compile(
    r"(?i)\b(training (arguments|hyper-?parameters|details|procedure|results|data|args|config)|hyper-?parameters?|arguments|framework|hardware|carbon|emissions?|"
    r"provided files|files?\b|quanti[sz]ation|download|prompt|usage|how to|model index|repositories|merge|config(uration)?|data(sets?)?\b|details)"
)
_OTHER_HEADER = {
    "filename", "file", "name", "quant method", "quant type", "bits", "size", "file size", "max ram required", "split", "use case", "description",
    "training loss", "epoch", "step", "validation loss", "hyperparameter", "parameter", "value", "source", "license", "pairs", "lr", "loss",
}
_RESULTS_WORDS = re.compile(r"(?i)(result|eval|benchmark|performance|leaderboard|comparison|score|accuracy|metric|pass@|win rate|\bvs\.?\b)")
_SUBJECT_HEADERS = {"model", "models", "run", "runs", "method", "methods", "name", "system", "subject", "checkpoint", "variant", "adapter", "model name", "approach", "setting"}
_TASK_HEADERS = {"benchmark", "benchmarks", "task", "tasks", "metric", "metrics", "dataset", "datasets", "category", "domain", "eval", "evaluation", "test", "held-out", "suite"}
_DOMAIN_HEADERS = {"category", "domain", "area", "group", "type"}
_DERIVED = re.compile(r"(?i)(Δ|\bdelta\b|\bdiff|improvement|\bgain\b|minus|\bvs\.?\s*(base|baseline)|recovered|usable|\brank\b|p-?value)")
_SINGLE_VALUE_HEADERS = {"value", "score", "result", "results", "", "this model"}


@lru_cache(maxsize=4096)
def _bench_like(text: str) -> bool:
    plain = _plain(text)
    if not plain:
        return False
    if map_task(plain)[1] or _metric_of(plain) or _FEWSHOT.search(plain):
        return True
    return bool(_BENCH_WORDS.search(plain)) or bool(re.search(r"\((score|acc|accuracy|%|win rate[^)]*|mc\d)\)", plain, re.I))


def _label_columns(t: Table) -> int:
    if t.form == "text":
        return _text_label_cols(t)
    n = 0
    ncols = len(t.header)
    for c in range(ncols - 1):
        cells = [r[c] for r in t.rows if c < len(r) and _plain(r[c])]
        numeric = sum(1 for x in cells if _is_numeric_cell(x))
        if cells and numeric / len(cells) >= 0.5:
            break
        n += 1
    return max(n, 1) if ncols > 1 else 0


def _text_label_cols(t: Table) -> int:
    # plain-text tables were built with label cells first, then value cells from the right
    for c in range(len(t.header)):
        if any(_is_numeric_cell(r[c]) for r in t.rows if c < len(r)):
            return max(c, 1)
    return 1


def _table_kind(t: Table) -> tuple[Literal["results", "other"], str]:
    ncols = len(t.header)
    nlabel = _label_columns(t)
    values = [r[c] for r in t.rows for c in range(nlabel, min(ncols, len(r)))]
    if not any(_is_numeric_cell(v) for v in values):
        return "other", "no numbers"
    context = " ".join(t.section_path[-2:] + ([t.caption] if t.caption else []))
    header_plain = [_plain(h).lower() for h in t.header]
    if sum(1 for h in header_plain if h in _OTHER_HEADER) >= 2 and not any(_bench_like(h) for h in t.header[nlabel:]):
        return "other", f"header names files/settings ({', '.join(h for h in header_plain if h in _OTHER_HEADER)})"
    if t.section and _OTHER_SECTION.search(t.section) and not _RESULTS_WORDS.search(t.section):
        return "other", f"section '{t.section}'"
    cells = t.header[nlabel:] + [r[c] for r in t.rows for c in range(nlabel) if c < len(r)]
    if any(_bench_like(x) for x in cells):
        return "results", "names benchmarks or metrics"
    if _RESULTS_WORDS.search(context) or any(_RESULTS_WORDS.search(h) for h in t.header):
        return "results", "section/caption/header speaks of results"
    return "other", "no benchmark, metric or results wording"


def _orientation(t: Table, nlabel: int, own_names: list[str]) -> Literal["models-as-rows", "models-as-columns", "single-model"]:
    label_headers = [_plain(h).lower() for h in t.header[:nlabel]]
    value_headers = t.header[nlabel:]
    rows_are_tasks = any(h in _TASK_HEADERS for h in label_headers) or any(map_task(h)[1] for h in t.header[:nlabel])
    rows_are_subjects = any(h in _SUBJECT_HEADERS for h in label_headers)
    row_labels = [r[nlabel - 1] for r in t.rows if nlabel and len(r) >= nlabel]
    hb = sum(_bench_like(h) for h in value_headers) / max(len(value_headers), 1)
    rb = sum(_bench_like(x) for x in row_labels) / max(len(row_labels), 1)
    if len(value_headers) == 1 and not rows_are_subjects:
        h = _plain(value_headers[0]).lower()
        if h in _SINGLE_VALUE_HEADERS or _metric_of(h) or rows_are_tasks or rb > 0:
            return "single-model"
    if rows_are_subjects:
        return "models-as-rows"
    if rows_are_tasks:
        return "models-as-columns"
    # a column or a row that names the card's own model ('KL-SFT (this model)') is a subject
    if any(_is_own(h, own_names) for h in value_headers):
        return "models-as-columns"
    if any(_is_own(x, own_names) for x in row_labels):
        return "models-as-rows"
    return "models-as-rows" if hb >= rb else "models-as-columns"


class _Desc(NamedTuple):
    task: str | None
    task_display: str
    mapped: bool
    metric: str | None
    metric_display: str | None
    fewshot: int | None


@lru_cache(maxsize=4096)
def _describe(text: str) -> _Desc:
    """What a header or row label says: benchmark, metric and few-shot count."""
    plain = _plain(text)
    fewshot = _fewshot_in(plain)
    metric = _metric_of(plain)
    if metric:
        return _Desc(None, plain, False, metric, plain, fewshot)
    metric_display = None
    name = plain
    m = re.search(r"\(([^)]*)\)", _FEWSHOT.sub(" ", plain))
    if m:
        inner = m.group(1).strip(" ,;")
        im = _metric_of(inner) or _metric_of(re.sub(r"\s*%$", "", inner))
        if im:
            metric, metric_display = im, inner
            if im not in ("mc1", "mc2"):  # 'TruthfulQA (MC2)' names a task, not just a metric
                stripped = _FEWSHOT.sub(" ", plain)
                name = re.sub(r"\s+", " ", stripped[: m.start()] + stripped[m.end() :]).strip()
    task, mapped = map_task(name)
    return _Desc(task, plain, mapped, metric, metric_display, fewshot)


def _normalise_metric(task: str | None, metric: str | None) -> tuple[str | None, str | None]:
    """lm-eval spells TruthfulQA's mc1/mc2 scores as task truthfulqa_mc1/mc2, metric acc."""
    if metric in ("mc1", "mc2"):
        return f"truthfulqa_{metric}", "acc"
    return task, metric


def _context_desc(t: Table) -> _Desc:
    texts = [t.caption or ""] + list(reversed(t.section_path))
    task = None
    metric = None
    shots = None
    display = ""
    for s in texts:
        if not s:
            continue
        if task is None:
            task = find_task_in_text(s)
            if task:
                display = _plain(s)
        if shots is None:
            shots = _fewshot_in(s)
        if metric is None:
            for inner in re.findall(r"\(([^)]*)\)", _plain(s)):
                metric = _metric_of(inner) or metric
    return _Desc(task, display, task is not None, metric, None, shots)


def _table_claims(card: ParsedCard, t: Table) -> list[ClaimDraft]:
    nlabel = _label_columns(t)
    orient = _orientation(t, nlabel, card.model_names)
    ctx = _context_desc(t)
    source = " / ".join(x for x in [t.section, _plain(t.caption) if t.caption else None] if x) or "card body"
    label_headers = [_plain(h).lower() for h in t.header[:nlabel]]
    domain_col = next((c for c, h in enumerate(label_headers) if h in _DOMAIN_HEADERS), None)
    if orient == "models-as-columns" and domain_col is None and nlabel >= 2:
        domain_col = 0
    own = card.model_names
    leaderboard = bool(re.search(r"(?i)leaderboard|lm-evaluation-harness|lm-eval", " ".join(t.section_path + [t.caption or "", t.note or ""])))
    # blank label cells continue the row above (a merged cell written as empty)
    rows = []
    prev: list[str] = []
    for r in t.rows:
        r = list(r) + [""] * (len(t.header) - len(r))
        for c in range(nlabel):
            if not _plain(r[c]) and prev and c < nlabel - 1:
                r[c] = prev[c]
        rows.append(r)
        prev = r
    # the subject of a row: its first label cell, plus the next ones while needed to tell rows apart
    subject_cols = 1
    if orient == "models-as-rows":
        while subject_cols < nlabel and len({tuple(_plain(r[c]) for c in range(subject_cols)) for r in rows}) < len(rows):
            subject_cols += 1
    out: list[ClaimDraft] = []
    single_subject = own[0] if own else "this model"
    for ri, r in enumerate(rows):
        task_col = nlabel - 1 if orient != "models-as-rows" else None
        if orient == "models-as-rows":
            row_label = " ".join(_plain(r[c]) for c in range(subject_cols) if _plain(r[c]))
        else:
            row_label = _plain(r[nlabel - 1]) if nlabel else ""
            if not row_label and nlabel:
                # a row like '| **Average** | | 67.6 |': the label sits in an earlier column
                task_col = next((c for c in range(nlabel) if _plain(r[c])), task_col)
                row_label = _plain(r[task_col]) if task_col is not None else ""
        domain = _plain(r[domain_col]) if domain_col is not None and domain_col != task_col else None
        links = [m.group(2) for c in range(nlabel) for m in _MD_LINK.finditer(r[c])]
        for ci in range(nlabel, len(t.header)):
            cell = r[ci] if ci < len(r) else ""
            # any number in a value column is a claim, words around it included
            # ('possibly contaminated (67.94)'); the text is kept as written
            v = parse_value(cell)
            if v is None:
                continue
            header = t.header[ci]
            derived = bool(_DERIVED.search(_plain(header)))
            if orient == "models-as-rows":
                subject, desc = row_label, _describe(header)
            elif orient == "models-as-columns":
                subject, desc = _plain(header), _describe(row_label)
            else:
                subject = single_subject
                desc = _describe(row_label)
                hm = _metric_of(header)
                if hm and not desc.metric:
                    desc = desc._replace(metric=hm, metric_display=_plain(header))
            task, mapped, display = desc.task, desc.mapped, desc.task_display
            metric, metric_display = desc.metric, desc.metric_display
            shots = desc.fewshot
            if task is None or (derived and not mapped):
                # the header is a metric (or a difference column): the benchmark comes from the
                # caption / section title
                task, mapped, display = (ctx.task, True, ctx.task_display) if ctx.task else (display, False, display)
            if shots is None:
                shots = ctx.fewshot
            if metric is None and ctx.metric and (ctx.task == task or not mapped):
                metric = ctx.metric
            task, metric = _normalise_metric(task, metric)
            if task == "truthfulqa_mc2" and not re.search(r"(?i)mc2", display + (metric_display or "")) and not leaderboard:
                # a bare 'TruthfulQA' is the mc2 score on the Open LLM Leaderboard, but elsewhere
                # (Llama 2's safety table) it is a generation metric: do not map it there
                task, mapped = display, False
            guessed = False
            if metric is None and task in _IMPLIED_METRIC:
                metric, guessed = _IMPLIED_METRIC[task], True
            subj_low = subject.lower()
            baseline = bool(re.search(r"\b(baseline|pretrained|base model)\b|^base(_\w+)?$", subj_low)) and "reference" not in subj_low
            out.append(
                ClaimDraft(
                    subject=subject, this_model=(orient == "single-model") or _is_own(subject, own), task=task or display, task_display=display,
                    task_mapped=bool(mapped), metric=metric, metric_display=metric_display or (desc.task_display if desc.metric and not desc.metric_display else None),
                    metric_guessed=guessed, value=v.number if v else None, value_text=cell.strip(), unit=v.unit if v else None,
                    stderr=v.stderr if v else None, num_fewshot=shots, domain=domain or None, orientation=orient, origin="table", source=source,
                    table=t.index, row=ri, column=ci, derived=derived, baseline=baseline, reference_only="reference only" in subj_low,
                    links=links if orient == "models-as-rows" else [],
                )
            )
    return out


def _model_index_claims(card: ParsedCard) -> list[ClaimDraft]:
    out = []
    for r in card.model_index:
        display = r.dataset_name or r.dataset_type
        name = re.sub(r"\s*\(\s*\d+\s*-?\s*shots?\s*\)\s*$", "", display, flags=re.I).strip() or r.dataset_type
        task, mapped = None, False
        # the Hub dataset id says which benchmark; its config says which part (ARC-Easy/Challenge)
        dtype, cfg = (r.dataset_type or "").lower().rsplit("/", 1)[-1], (r.dataset_config or "").lower()
        if dtype == "ai2_arc":
            task, mapped = ("arc_easy" if "easy" in cfg else "arc_challenge"), True
        elif dtype in ("truthful_qa", "truthfulqa"):
            task, mapped = "truthfulqa_mc2", True
        if task is None:
            for cand in (r.dataset_name, r.dataset_type):
                t, ok = map_task(cand or "")
                if ok:
                    task, mapped = t, True
                    break
        if task is None:
            task = name
        metric = _metric_of(r.metric_type) or (r.metric_type if r.metric_type != "unknown" else None)
        if metric is None and r.metric_name:
            metric = _metric_of(r.metric_name) or r.metric_name
        metric_display = r.metric_name or r.metric_type
        task, metric = _normalise_metric(task, metric)
        text = r.value if isinstance(r.value, str) else repr(r.value)
        v = parse_value(text) if isinstance(r.value, str) else None
        number = float(r.value) if isinstance(r.value, (int, float)) and not isinstance(r.value, bool) else (v.number if v else None)
        source = "model-index" + (f": {r.source_name}" if r.source_name else "") + (f" ({r.source_url})" if r.source_url else "")
        out.append(
            ClaimDraft(
                subject=r.model_name, this_model=True, task=task, task_display=display, task_mapped=mapped, metric=metric, metric_display=metric_display,
                value=number, value_text=str(r.value), unit=v.unit if v else None, stderr=v.stderr if v else None, num_fewshot=r.num_fewshot,
                orientation="model-index", origin="model-index", source=source, links=[r.source_url] if r.source_url else [],
            )
        )
    return out


_METRIC_SECTION = re.compile(r"(?i)^(validation metrics|evaluation metrics|metrics|evaluation results|results|test metrics|eval results)$")
_METRIC_LINE = re.compile(r"^\s*(?:[-*]\s*)?([A-Za-z][\w /@.()-]{0,40}?)\s*:\s*([+\-]?\d[\d,]*(?:\.\d+)?(?:[eE][+\-]?\d+)?%?)\s*$")


def _metric_lines(card: ParsedCard) -> list[dict[str, Any]]:
    out = []
    for s in card.sections:
        if not _METRIC_SECTION.match(s.title):
            continue
        in_code = False
        for k, ln in enumerate(s.body.split("\n")):
            if _FENCE.match(ln):
                in_code = not in_code
            if in_code:
                continue
            m = _METRIC_LINE.match(ln)
            if m:
                out.append({"section": s.title, "name": m.group(1).strip(), "value_text": m.group(2), "line": s.line + 1 + k})
    return out


def _metric_line_claims(card: ParsedCard) -> list[ClaimDraft]:
    out = []
    subject = card.model_names[0] if card.model_names else "this model"
    for m in card.metric_lines:
        v = parse_value(m["value_text"])
        metric = _metric_of(m["name"]) or m["name"].lower()
        out.append(
            ClaimDraft(
                subject=subject, this_model=True, task=m["section"], task_display=m["section"], metric=metric, metric_display=m["name"],
                value=v.number if v else None, value_text=m["value_text"], unit=v.unit if v else None, orientation="metric-list", origin="metric-list",
                source=m["section"],
            )
        )
    return out


def claims_from_card(parsed: ParsedCard) -> list[ClaimDraft]:
    """Every number of the card's results tables, model-index and metrics lists, as claims.

    Order: model-index first (the structured source), then tables in card order, then 'name:
    value' metric lines. Nothing is dropped: derived columns (Δ vs baseline) come back with
    `derived=True`, and values whose metric had to be guessed with `metric_guessed=True`.
    """
    out = _model_index_claims(parsed)
    stated = {(c.task, c.num_fewshot): c.metric for c in out if c.metric}
    for t in parsed.tables:
        if t.kind == "results":
            for c in _table_claims(parsed, t):
                # a guessed metric yields to the one the card's own model-index states for the task
                if c.this_model and c.metric_guessed and stated.get((c.task, c.num_fewshot)):
                    c.metric = stated[(c.task, c.num_fewshot)]
                out.append(c)
    out += _metric_line_claims(parsed)
    return out


# -- pins ----------------------------------------------------------------------------------------------------

_PKG_NAMES = {
    "transformers": "transformers", "pytorch": "torch", "torch": "torch", "datasets": "datasets", "tokenizers": "tokenizers", "peft": "peft",
    "trl": "trl", "accelerate": "accelerate", "bitsandbytes": "bitsandbytes", "lm-eval": "lm-eval", "lm_eval": "lm-eval", "flash-attn": "flash-attn",
    "flash_attn": "flash-attn", "deepspeed": "deepspeed", "vllm": "vllm", "safetensors": "safetensors", "xformers": "xformers", "auto-gptq": "auto-gptq",
    "optimum": "optimum", "sentencepiece": "sentencepiece", "unsloth": "unsloth", "axolotl": "axolotl", "mergekit": "mergekit", "jax": "jax",
    "tensorflow": "tensorflow", "huggingface-hub": "huggingface-hub", "huggingface_hub": "huggingface-hub", "lm-evaluation-harness": "lm-eval",
}
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)(\[[^\]]*\])?\s*(===|==|>=|<=|~=|!=|<|>)\s*([0-9][\w.*+!-]*)\s*(?:[;#].*)?$")
_VERSION = r"(\d+(?:\.[0-9A-Za-z]+)*(?:\+[0-9A-Za-z.]*[0-9A-Za-z])?)"
_PROSE_PIN = re.compile(rf"([A-Za-z][A-Za-z0-9_.\-]*)(?:\[[^\]]*\])?\s*(==|=)\s*{_VERSION}")
_ENV_LINE = re.compile(rf"^\s*([A-Za-z][A-Za-z0-9_.\-]*)\s*:\s*v?{_VERSION}\s*$")
_HEX_REF = re.compile(r"^(?:[0-9a-f]{7,40}|v?\d+\.\d+(?:\.\d+)*)$")


def _canon_pkg(name: str) -> str:
    low = name.lower()
    return _PKG_NAMES.get(low, re.sub(r"[-_.]+", "-", low))


def _pip_pins(line: str, lineno: int, kind: str = "pip") -> list[Pin]:
    m = re.search(r"\bpip3?\s+install\b(.*)$", line)
    if not m:
        return []
    try:
        tokens = shlex.split(m.group(1), comments=True)
    except ValueError:
        tokens = m.group(1).split()
    out = []
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
            continue
        if tok in ("&&", ";", "|"):
            break
        if tok in ("-r", "-c", "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-e", "--editable"):
            skip_next = tok not in ("-e", "--editable")
            continue
        if tok.startswith("-"):
            continue
        git = re.match(r"^(?:([A-Za-z0-9_.\-]+)\s*@\s*)?(git\+https?://\S+?)(?:@([\w.\-]+))?(?:#.*)?$", tok)
        if git:
            ref = git.group(3)
            name = git.group(1) or re.sub(r"\.git$", "", git.group(2).rstrip("/").split("/")[-1])
            if ref and _HEX_REF.match(ref):
                url = re.sub(r"\.git$", "", git.group(2))
                out.append(Pin(package=_canon_pkg(name), spec=f"@ {url}@{ref}", version=ref, kind=kind, text=redact_text(line.strip()), line=lineno))
            continue
        r = _REQ.match(tok)
        if r:
            out.append(Pin(package=_canon_pkg(r.group(1)), spec=f"{r.group(3)}{r.group(4)}", version=r.group(4) if r.group(3) == "==" else None, kind=kind, text=redact_text(line.strip()), line=lineno))
    return out


def _pins(lines: list[str], start: int, scan: _Scan, text_mode: bool) -> tuple[list[Pin], str | None]:
    pins: list[Pin] = []
    tested_on = None
    code_lines: set[int] = set()
    for a, b, info, body in scan.code:
        code_lines.update(range(a, b + 1))
        lang = (info.split() or [""])[0].lower()
        reqs = [(a + 1 + k, ln) for k, ln in enumerate(body) if ln.strip() and not ln.strip().startswith("#")]
        if reqs and (lang in ("requirements", "requirements.txt", "pip", "txt", "text") or lang == "") and sum(1 for _, ln in reqs if _REQ.match(ln)) >= max(2, 0.6 * len(reqs)):
            for n, ln in reqs:
                r = _REQ.match(ln)
                if r:
                    pins.append(Pin(package=_canon_pkg(r.group(1)), spec=f"{r.group(3)}{r.group(4)}", version=r.group(4) if r.group(3) == "==" else None, kind="requirements", text=ln.strip(), line=n + 1))
            continue
        # an environment listing ('lm-eval: 0.4.11', 'transformers: 5.4.0') of known packages
        listed = [(a + 2 + k, ln, m) for k, ln in enumerate(body) if (m := _ENV_LINE.match(ln)) and m.group(1).lower() in _PKG_NAMES]
        if len(listed) >= 2:
            for n, ln, m in listed:
                pins.append(Pin(package=_canon_pkg(m.group(1)), spec=f"=={m.group(2)}", version=m.group(2), kind="requirements", text=ln.strip(), line=n))
            continue
        joined = "\n".join(body)
        if re.search(r"git clone \S*lm-evaluation-harness", joined):
            ref = re.search(r"git checkout\s+([\w.\-]+)", joined)
            if ref and _HEX_REF.match(ref.group(1)):
                url = re.search(r"git clone (\S*lm-evaluation-harness)(?:\.git)?", joined).group(1).removesuffix(".git")
                n = next(a + 2 + k for k, ln in enumerate(body) if "git checkout" in ln)
                pins.append(Pin(package="lm-eval", spec=f"@ git+{url}@{ref.group(1)}", version=ref.group(1), kind="git-checkout", text=f"git checkout {ref.group(1)}", line=n))
        for k, ln in enumerate(body):
            pins += _pip_pins(ln, a + 2 + k)
    in_framework = False
    for i in range(start, len(lines)):
        ln = lines[i]
        if i in code_lines:
            continue
        if _ATX.match(ln):
            in_framework = bool(re.search(r"(?i)framework versions", ln))
            continue
        if in_framework:
            m = re.match(rf"^\s*[-*]\s*([A-Za-z][\w\- ]*?)\s+{_VERSION}\s*$", ln)
            if m:
                pins.append(Pin(package=_canon_pkg(m.group(1).strip()), spec=f"=={m.group(2)}", version=m.group(2), kind="framework-versions", text=ln.strip(), line=i + 1))
            continue
        if text_mode or "pip install" in ln:
            for p in _pip_pins(ln, i + 1):
                pins.append(p)
        t = re.search(r"(?i)\btested\s+(?:on|with|using)\b\s*(.*)$", ln)
        if t:
            sentence = t.group(1)
            end = re.search(r"\.\s+(?=[A-Z])", sentence)
            if end:
                sentence = sentence[: end.start()]
            found = list(_PROSE_PIN.finditer(sentence))
            for m in found:
                pins.append(Pin(package=_canon_pkg(m.group(1)), spec=f"=={m.group(3)}", version=m.group(3), kind="tested-on", text=redact_text(ln.strip()), line=i + 1))
            if found:
                hw = sentence[: found[0].start()].strip(" ,;:")
                tested_on = tested_on or (hw or None)
            continue
        b = re.match(rf"^\s*([A-Za-z][A-Za-z0-9_\-]*)\s*==?\s*{_VERSION}\s*$", ln)
        if b and b.group(1).lower() in _PKG_NAMES:
            pins.append(Pin(package=_canon_pkg(b.group(1)), spec=f"=={b.group(2)}", version=b.group(2), kind="bare", text=ln.strip(), line=i + 1))
    unique: dict[tuple, Pin] = {}
    for p in pins:
        unique.setdefault((p.package, p.spec, p.kind), p)
    return list(unique.values()), tested_on


def pins_dict(pins: list[Pin]) -> dict[str, str]:
    """Package -> specifier, one per package: a pip install line wins over a 'Tested on' sentence,
    then requirements, git checkouts, framework-version lists and bare 'pkg=1.2' lines."""
    order = {"pip": 0, "git-checkout": 1, "tested-on": 2, "requirements": 3, "framework-versions": 4, "bare": 5}
    return pins_mapping(sorted(pins, key=lambda p: order[p.kind]))


def pin_conflicts(pins: list[Pin]) -> list[str]:
    """Packages the card pins to more than one version, in words."""
    seen: dict[str, set[str]] = {}
    for p in pins:
        seen.setdefault(p.package, set()).add(re.sub(r"\+[\w.]+$", "", p.spec))
    return [f"{pkg}: {', '.join(sorted(specs))}" for pkg, specs in seen.items() if len(specs) > 1]


# -- links, bibtex, license ----------------------------------------------------------------------------------


def _links(lines: list[str], start: int, code_lines: set[int]) -> list[Link]:
    out: list[Link] = []
    seen: set[str] = set()
    for i in range(start, len(lines)):
        if i in code_lines:
            continue
        ln = lines[i]
        for m in _MD_LINK.finditer(ln):
            url = m.group(2)
            if url.startswith(("http://", "https://")) and url not in seen:
                seen.add(url)
                out.append(Link(text=_plain(m.group(1)), url=url, line=i + 1))
        for m in re.finditer(r"<a\s[^>]*href=[\"']([^\"']+)[\"'][^>]*>(.*?)</a>", ln, re.I):
            if m.group(1).startswith("http") and m.group(1) not in seen:
                seen.add(m.group(1))
                out.append(Link(text=_plain(m.group(2)), url=m.group(1), line=i + 1))
        stripped = _MD_LINK.sub(" ", ln)
        for m in _BARE_URL.finditer(stripped):
            url = m.group(0).rstrip(".,;:")
            if url not in seen:
                seen.add(url)
                out.append(Link(text="", url=url, line=i + 1))
    return out


_BIB_START = re.compile(r"@([A-Za-z]+)\s*\{\s*([^,\s]*)\s*,")


def _bib_entries(block: list[tuple[int, str]]) -> list[BibEntry]:
    out = []
    text = "\n".join(ln for _, ln in block)
    offsets = []
    pos = 0
    for n, ln in block:
        offsets.append((pos, n))
        pos += len(ln) + 1
    for m in _BIB_START.finditer(text):
        if m.group(1).lower() in ("misc", "article", "inproceedings", "book", "techreport", "phdthesis", "online", "software", "incollection", "unpublished", "proceedings", "manual", "inbook", "mastersthesis"):
            depth = 0
            end = None
            for k in range(m.start(), len(text)):
                if text[k] == "{":
                    depth += 1
                elif text[k] == "}":
                    depth -= 1
                    if depth == 0:
                        end = k + 1
                        break
                elif text[k] == "@" and k > m.start() and depth > 0 and text[k - 1] == "\n":
                    break
            complete = end is not None
            if end is None:
                nxt = _BIB_START.search(text, m.end())
                end = nxt.start() if nxt else len(text)
            line = next(n for off, n in reversed(offsets) if off <= m.start())
            out.append(BibEntry(key=m.group(2) or "", type=m.group(1).lower(), bibtex=text[m.start() : end].strip(), line=line, complete=complete))
    return out


def _bibtex(lines: list[str], start: int, scan: _Scan, text_mode: bool) -> list[BibEntry]:
    out: list[BibEntry] = []
    for a, _b, _info, body in scan.code:
        if _BIB_START.search("\n".join(body)):
            out += _bib_entries([(a + 2 + k, ln) for k, ln in enumerate(body)])
    if text_mode or not scan.code:
        prose = [(i + 1, lines[i]) for i in (range(start, len(lines)) if text_mode else scan.prose)]
        out += _bib_entries(prose)
    return out


def _license_text(card: ParsedCard) -> str | None:
    for s in card.sections:
        if re.match(r"(?i)^licen[cs]e\b", s.title) and s.body.strip():
            return s.body.strip().split("\n\n")[0]
    m = re.search(r"(?im)^\s*[-*]?\s*\**licen[cs]e\**\s*:?\**\s*:?\s*(.+)$", card.body)
    return _plain(m.group(1)) if m else None


# -- manifest draft ---------------------------------------------------------------------------------------------

# lm-eval 0.3 task names -> the 0.4 task whose numbers a card reports for them
_LEGACY_TASKS = {"hendrycksTest-*": "mmlu", "truthfulqa_mc": "truthfulqa_mc2"}
_LIMITATION_TITLE = re.compile(r"(?i)^\W*(bias|risks?|limitations?|known (issues|limitations)|ethical considerations)\b")
_CITATION_TITLE = re.compile(r"(?i)^(citation|citations|cite|bibtex|reference)s?\b")
_LICENSE_TITLE = re.compile(r"(?i)^licen[cs]e\b")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", _plain(text).lower()).strip("-")
    return s or "item"


def _claim_value(c: ClaimDraft) -> Any:
    """The claim's value for the manifest: its number when the cell is just a number (with unit,
    emphasis or ± stderr), else the text as written."""
    if c.value is None:
        return c.value_text
    rest = _VALUE.sub("", _plain(c.value_text), count=1).strip()
    return c.value if not re.search(r"[A-Za-z]", rest) else c.value_text


def manifest_draft(parsed: ParsedCard) -> ManifestDraft:
    """A hubkit manifest mapping drafted from a parsed card, and the TODO list of what the card
    does not say (returned alongside, never filled in with guesses).

    Project metadata comes from the front matter (license, language, tags) and the body (title,
    intro, links, BibTeX); sections keep the card's prose verbatim; results tables and model-index
    become claims (a table fully turned into claims leaves its section, any other table stays in
    it, so that rendering the manifest carries every number of the original); documented lm-eval
    commands become eval setups with the card's pins. The mapping validates as Manifest.
    """
    from .manifest import Manifest

    todo: list[str] = []
    names = parsed.model_names
    name = names[0] if names else None
    if name is None:
        name = "unnamed model"
        todo.append("project.name: the card has no title, model-index name or model_name; name the project")
    elif parsed.title and name == parsed.title:
        todo.append(f"project.name: taken from the card's first heading {parsed.title!r}; check it")
    project: dict[str, Any] = {"name": name}
    lic = parsed.license
    if lic and lic != "other":
        project["license"] = lic
    elif lic == "other" and parsed.license_name and parsed.license_link:
        project.update(license="other", license_name=str(parsed.license_name), license_link=str(parsed.license_link))
    else:
        project["license"] = "unknown"
        why = "license: other without license_name/license_link" if lic == "other" else "no license in the front matter"
        todo.append(f"project.license: {why}" + (f"; the body says: {parsed.license_text!r}" if parsed.license_text else "") + "; set the Hub license id")
    if parsed.language:
        project["language"] = parsed.language
    if parsed.tags:
        project["tags"] = [t for t in parsed.tags if isinstance(t, str)]
    if parsed.pipeline_tag:
        project["pipeline_tag"] = str(parsed.pipeline_tag)
    links = _named_links(parsed)
    if links:
        project["links"] = links
    cites = [{"key": b.key or f"ref{i}", "bibtex": b.bibtex} for i, b in enumerate(parsed.bibtex)]
    if cites:
        project["citations"] = cites
    for b in parsed.bibtex:
        if not b.complete:
            todo.append(f"project.citations: the BibTeX entry {b.key!r} (line {b.line}) is not closed in the card; fix it")
    todo.append("project.authors: a card does not list its authors in a machine-readable way; add them")

    # the card's own model becomes an artifact, so that its claims stay its own (model-index,
    # "this model" rows); where its files are is the user's to say
    art_name = _slug((parsed.repo_id or name).split("/")[-1]) or "model"
    meta_relation = str(parsed.metadata.get("base_model_relation") or "")
    lib = (parsed.library_name or "").lower()
    tags = {str(t).lower() for t in parsed.tags}
    if lib == "peft" or meta_relation == "adapter":
        kind = "adapter"
    elif lib == "gguf" or meta_relation == "quantized" or "gguf" in tags:
        kind = "quantized"
    elif meta_relation == "merge" or {"merge", "mergekit"} & tags:
        kind = "merged"
    else:
        kind = "full"
    artifact: dict[str, Any] = {"kind": kind, "path": art_name}
    if parsed.repo_id:
        artifact["repo_id"] = parsed.repo_id
    if parsed.base_models:
        artifact["base_model"] = parsed.base_models[0] if len(parsed.base_models) == 1 or kind not in ("merged", "full") else list(parsed.base_models)
    if parsed.library_name:
        artifact["library_name"] = str(parsed.library_name)
    todo.append(f"artifacts.{art_name}: the card's own model, as a {kind} artifact; set path (its local folder) and repo_id" + ("" if parsed.repo_id else " (the card does not say)"))

    claims = [c for c in claims_from_card(parsed) if not c.derived and c.value is not None]
    manifest_claims, claim_tables = _manifest_claims(parsed, claims, art_name, todo)

    sections: list[dict[str, str]] = []
    limitations: list[str] = []
    for s in parsed.sections:
        body = s.body
        if s.level == 0 and parsed.text_mode and any(x.level == 1 for x in parsed.sections):
            todo.append(f"sections: the text above the title ({body.strip().splitlines()[0][:60]!r}...) looks like Hub page chrome; dropped")
            continue
        if s.level == 0 or (s.level == 1 and s.title == parsed.title):
            intro = _strip_tables(body, parsed, claim_tables, s).strip()
            if intro:
                project["summary"] = intro
            continue
        if _LIMITATION_TITLE.search(s.title) and body.strip():
            items = [re.sub(r"^\s*([-*•]|\d+[.)])\s+", "", ln).strip() for ln in body.split("\n") if _LIST_ITEM.match(ln)]
            limitations += items or [p.strip() for p in body.split("\n\n") if p.strip() and not p.strip().startswith("<!--")]
            continue
        if _CITATION_TITLE.match(s.title):
            rest = re.sub(r"```[a-zA-Z]*\n\s*@[\s\S]*?```", "", body).strip()
            if parsed.text_mode:
                rest = ""
            if rest:
                sections.append({"title": s.title, "body": rest})
            continue
        if _LICENSE_TITLE.match(s.title):
            if body.strip():
                project["license_note"] = body.strip()
            continue
        body = _strip_tables(body, parsed, claim_tables, s).strip()
        if body:
            sections.append({"title": s.title or "Notes", "body": body})
    if limitations:
        project["limitations"] = limitations

    evals: dict[str, Any] = {}
    pins = pins_dict(parsed.pins)
    for conflict in pin_conflicts(parsed.pins):
        todo.append(f"evals.*.pins: the card pins {conflict}; the first was kept")
    claim_metrics: dict[str, list[str]] = {}
    for c in manifest_claims:
        claim_metrics.setdefault(c["task"], [])
        if c["metric"] not in claim_metrics[c["task"]] and c["metric"] != "unknown":
            claim_metrics[c["task"]].append(c["metric"])
    for doc in parsed.commands:
        cmd = doc.command
        if not cmd.tasks:
            todo.append(f"evals: the command at line {doc.location.line} names no --tasks; skipped")
            continue
        key = _slug("-".join(cmd.tasks[:2]) + (f"-{cmd.num_fewshot}shot" if cmd.num_fewshot is not None else ""))
        base_key, n = key, 2
        while key in evals:
            key, n = f"{base_key}-{n}", n + 1
        modern = [_LEGACY_TASKS.get(t, t) for t in cmd.tasks]
        metrics = [m for t in modern for m in claim_metrics.get(t, [])]
        try:
            evals[key] = to_eval_setup(cmd, pins, metrics=list(dict.fromkeys(metrics)) or None)
        except ValueError as exc:
            todo.append(f"evals.{key}: {exc}")
            continue
        for gap in eval_setup_gaps(cmd, pins):
            todo.append(f"evals.{key}: {gap}")
        hints = {k: v for k, v in {"base model": cmd.model_args.pretrained, "adapter": cmd.model_args.peft, "tokenizer": cmd.model_args.tokenizer, "revision": cmd.model_args.revision}.items() if v}
        if hints:
            todo.append(f"evals.{key}: the command evaluates " + ", ".join(f"{k} {v}" for k, v in hints.items()) + "; add the artifacts (local paths) and set evals." + key + ".artifacts")
        if not metrics:
            todo.append(f"evals.{key}.metrics: the card states no metric for {', '.join(cmd.tasks)}; lm-eval's acc/acc_norm default kept")
        # the few-shot count the run used: stated, or lm-eval's default (0 in 0.3; the task's own in 0.4)
        shots = cmd.num_fewshot if cmd.num_fewshot is not None else cmd.defaults["num_fewshot"].value
        for c in manifest_claims:
            if c["task"] in modern and (c.get("num_fewshot") is None or shots is None or c["num_fewshot"] == shots) and c.get("_own") and "setup" not in c:
                c["setup"] = key
    # claims outside any table that a report card could not show side by side (two metrics of
    # one task and subject): their numbers also go into a section, so rendering keeps them all
    per_cell: dict[tuple[str, str], set] = {}
    for c in manifest_claims:
        per_cell.setdefault((c["subject"], c["task"]), set()).add(c["metric"])
    stacked = [c for c in manifest_claims if c["_table"] is None and len(per_cell[(c["subject"], c["task"])]) > 1]
    if stacked:
        rows = ["| subject | task | metric | value | few-shot | source |", "|---|---|---|---|---|---|"]
        for c in stacked:
            rows.append(f"| {c['subject']} | {c['task']} | {c['metric']} | {c['_text']} | {c.get('num_fewshot', '')} | {c['source']} |")
        sections.append({"title": "Results in the card's metadata", "body": "\n".join(rows)})
        todo.append("sections: 'Results in the card's metadata' repeats claims a report card shows one per task and subject; drop it once the artifacts are added")
    for c in manifest_claims:
        for k in ("_own", "_text", "_table"):
            c.pop(k, None)
    if parsed.commands and not pins:
        todo.append("evals.*.pins: the card pins no package versions; a re-run will use today's releases")
    if not parsed.commands:
        todo.append("evals: the card documents no lm-eval command; write the eval setup that reproduces its numbers")

    datasets = {}
    for d in parsed.datasets:
        if _HUB_ID.match(d):
            datasets[_slug(d.split("/")[-1])] = {"hub_id": d}
        else:
            datasets[_slug(d)] = {"title": d}
            todo.append(f"datasets.{_slug(d)}: {d!r} is not a Hub dataset id")
    todo.append("lineage: the training stages are prose in the card; describe them as lineage stages if the card should show the recipe table")
    if parsed.front_matter_blocks > 1:
        todo.append(f"the card has {parsed.front_matter_blocks} front-matter blocks; the Hub reads only the first")
    for p in parsed.problems:
        todo.append(f"card: {p}")

    manifest: dict[str, Any] = {"schema_version": 1, "project": project, "artifacts": {art_name: artifact}}
    if datasets:
        manifest["datasets"] = datasets
    if evals:
        manifest["evals"] = evals
    if manifest_claims:
        manifest["claims"] = manifest_claims
    if sections:
        manifest["sections"] = sections
    Manifest.model_validate(manifest)
    return ManifestDraft(manifest, todo)


def _named_links(parsed: ParsedCard) -> dict[str, str]:
    """Links the card labels itself ('**Repository:** https://...', '[paper](https://arxiv...)')."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(?im)^\s*[-*]?\s*\**([A-Z][\w ]{1,30}?)\**\s*:\**\s*(?:\[[^\]]*\]\()?<?(https?://[^\s)>]+)", parsed.body):
        label = _slug(m.group(1))
        if label not in out and not re.match(r"(?i)(license|note|update)", m.group(1)):
            out[label] = m.group(2).rstrip(".,")
    for link in parsed.links:
        if "arxiv.org/abs" in link.url and "paper" not in out:
            out["paper"] = link.url
    return out


def _manifest_claims(parsed: ParsedCard, claims: list[ClaimDraft], name: str, todo: list[str]) -> tuple[list[dict], set[int]]:
    """Claims as manifest entries (deduplicated), and the tables every number of which they carry."""
    out: list[dict] = []
    seen: dict[tuple, dict] = {}
    seen_text: dict[tuple, str] = {}
    unmapped: dict[str, list[str]] = {}
    covered: dict[int, bool] = {}
    for t in parsed.tables:
        if t.kind == "results":
            covered[t.index] = True
    all_drafts = claims_from_card(parsed)
    for c in all_drafts:
        if c.table is not None and (c.derived or c.value is None):
            covered[c.table] = False
    guessed = 0
    for c in claims:
        subject = name if c.this_model else c.subject
        value = _claim_value(c)
        entry: dict[str, Any] = {"subject": subject, "task": c.task, "metric": c.metric or "unknown", "value": value}
        if isinstance(value, str) and c.value is not None:
            # a qualified value ("possibly contaminated (67.94)"): the number for verdicts and
            # metadata, the words as the card shows them
            entry["value"], entry["display"] = c.value, _plain(c.value_text).strip()
        elif c.unit == "%":
            entry["unit"] = "%"
        if c.stderr is not None:
            entry["stderr"] = c.stderr
        if c.num_fewshot is not None:
            entry["num_fewshot"] = c.num_fewshot
        entry["source"] = c.source
        if c.baseline:
            entry["baseline"] = True
        if c.reference_only:
            entry["reference_only"] = True
        if c.domain:
            entry["domain"] = c.domain
        key = (subject, c.task, entry["metric"], c.num_fewshot)
        if key in seen:
            if _same_number(seen_text[key], c.value_text):
                if c.source not in seen[key]["source"]:
                    seen[key]["source"] += f"; {c.source}"
                first = seen[key]
                if _plain(seen_text[key]) != _plain(c.value_text):
                    # the same number written twice (62.03071672354948 in model-index, 62.03 in a
                    # table): keep the precise value, and the table's wording as the display
                    table_text = c.value_text if c.origin == "table" else (first.get("display") or seen_text[key])
                    if len(_plain(c.value_text)) > len(_plain(seen_text[key])):
                        first["value"] = _claim_value(c)
                        seen_text[key] = c.value_text
                    first["display"] = table_text.strip()
                continue
            entry["subject"] = f"{subject} ({c.source.split(':')[0]})"
            todo.append(f"claims: {subject} {c.task} {entry['metric']} is {seen[key]['value']!r} in {seen[key]['source']} but {entry['value']!r} in {c.source}")
        if c.metric is None:
            todo.append(f"claims: no metric for {subject} / {c.task_display} ({c.source}); set it")
        elif c.metric_guessed:
            guessed += 1
        if not c.task_mapped:
            unmapped.setdefault(c.task, []).append(subject)
        entry["_own"] = c.this_model
        entry["_text"] = c.value_text
        entry["_table"] = c.table
        seen[key] = entry
        seen_text[key] = c.value_text
        out.append(entry)
    for task, subjects in unmapped.items():
        todo.append(f"claims: {task!r} ({len(subjects)} claim(s)) is not an lm-eval task name; rename it if a run should reproduce it")
    if guessed:
        todo.append(f"claims: {guessed} metric(s) were not stated and were set from the benchmark's usual headline metric (e.g. acc_norm for arc_challenge); check them")
    # a table leaves its section only when every number in it is a claim that any report can show
    per_cell: dict[tuple[str, str], set] = {}
    for e in out:
        per_cell.setdefault((e["subject"], e["task"]), set()).add(e["metric"])
    collide = {k for k, v in per_cell.items() if len(v) > 1}
    for subject, task in sorted(collide):
        todo.append(f"claims: {subject} / {task} has several metrics ({', '.join(sorted(per_cell[(subject, task)]))}); a report card shows one number per task and subject, an artifact card shows them all")
    for c in claims:
        subject = name if c.this_model else c.subject
        if c.table is not None and (subject, c.task) in collide:
            covered[c.table] = False
    return out, {i for i, ok in covered.items() if ok}


def _same_number(a: str, b: str) -> bool:
    """Two written values state the same number: equal, or equal once the more precise one is
    rounded to the other's written decimals (62.03071672354948 in model-index, 62.03 in a table)."""
    va, vb = parse_value(a), parse_value(b)
    if va is None or vb is None:
        return _plain(a) == _plain(b)
    if va.unit != vb.unit and "%" in (va.unit, vb.unit):
        return False

    def places(text: str) -> int:
        m = re.search(r"\d(?:\.(\d+))?", _plain(text).replace(",", ""))
        return len(m.group(1) or "") if m else 0

    k = min(places(a), places(b))
    return round(va.number, k) == round(vb.number, k) and (va.stderr is None or vb.stderr is None or round(va.stderr, k + 2) == round(vb.stderr, k + 2))


def _strip_tables(body: str, parsed: ParsedCard, claim_tables: set[int], section: Section) -> str:
    for t in parsed.tables:
        if t.index in claim_tables and t.text and t.text in body and t.section == (section.title or None):
            body = body.replace(t.text, "", 1)
    return re.sub(r"\n{3,}", "\n\n", body)


def render_draft_yaml(draft: ManifestDraft, source: str = "README.md") -> str:
    """The draft as hubkit.yaml text: a header naming the source, the TODO list as comments,
    then the manifest."""
    head = [f"# Drafted by `hubkit import` from {source}. Every number below is the card's own claim.", "# TODO before publishing:"]
    head += [f"#   - {item}" for item in draft.todo]
    return "\n".join(head) + "\n" + yaml.safe_dump(draft.manifest, sort_keys=False, allow_unicode=True, width=100)
