"""The results tables of a card, as data: titles, headers, rows of formatted cells.

Python decides what each cell says (numbers are formatted here, once); the Jinja macros in
`templates/card/_macros.md.j2` decide how a table looks, so a template override can restyle them.

One table per task and few-shot setting (ARC at 0 and at 25 shots are two tables, each titled
with its shot count). A group (MMLU) gets a table of its headline score, with its subtasks
folded under it. Metrics carry their filter (`exact_match (strict-match)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..eval.claims import Cell, claim_number
from ..manifest import Manifest
from .numbers import decimals, fmt, is_fraction

_SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_NUM = __import__("re").compile(r"(?<![\w.`/-])[-+]?\d[\d,]*(?:\.\d+)?(?![\w.`/-])")


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str | None = None
    numbers: set[str] = field(default_factory=set)  # every number string shown, for --check
    details: list["Table"] = field(default_factory=list)  # folded under this table (a group's subtasks)
    summary: str | None = None  # the line that unfolds `details`


@dataclass
class Headline:
    """A number the card must show: for --check against the records and for model-index."""

    subject: str
    task: str
    num_fewshot: int | None
    metric_label: str
    text: str
    cell: Cell
    title: str = ""  # the results table it is shown under


def shots_title(task: str, shots: int | None, extra: str = "") -> str:
    return task + extra + (f", {shots}-shot" if shots is not None else "")


def _source(cell: Cell) -> str:
    if cell.origin == "reproduced":
        return f"reproduced: {cell.record.strategy}, run `{cell.record.run_id}`"
    if cell.origin == "imported":
        return f"imported lm-eval {cell.record.lm_eval_version or '?'} results, run `{cell.record.run_id}`"
    c = cell.claim
    label = "reference only" if c.reference_only else "claimed"
    return label + (f" ({c.source})" if c.source else "")


def _is_baseline(cell: Cell) -> bool:
    if cell.row is not None:
        return cell.subject == "base"
    return bool(cell.claim and cell.claim.baseline)


def _coverage(cell: Cell) -> dict | None:
    if cell.record is None or not cell.row or not cell.row.is_group:
        return None
    return ((cell.record.data_overrides or {}).get(cell.task) or {}).get("coverage")


def coverage_note(coverage: dict | None) -> str:
    if not coverage or not coverage.get("missing"):
        return ""
    return f" ({len(coverage['included'])} of {coverage['total']} subtasks, local data)"


class _Builder:
    def __init__(self, manifest: Manifest, label, table_notes: dict[str, str] | None = None):
        self.manifest = manifest
        self.label = label
        self.headlines: list[Headline] = []
        self.notes: list[str] = []
        self.table_notes = table_notes or {}

    def value_text(self, cell: Cell, places: int, se_places: int, numbers: set[str]) -> str:
        """'value ± stderr' as printed (a claim as its source words it); every number shown is
        recorded as backed by data, and a claim's note gets a footnote mark."""
        if cell.row is None:
            return self.claim_text(cell, places, se_places, numbers)
        if cell.row.value is None:
            return f"unavailable: {cell.row.unavailable}"
        text = fmt(float(cell.row.value), places)
        numbers.add(text)
        if cell.row.stderr is not None:
            se = fmt(float(cell.row.stderr), se_places)
            numbers.add(se)
            text += f" ± {se}"
        return text

    def claim_text(self, cell: Cell, places: int, se_places: int, numbers: set[str]) -> str:
        c = cell.claim
        if c.display:
            text = c.display
            numbers.update(n.lstrip("+") for n in _NUM.findall(text))
        else:
            v = c.value
            text = fmt(v, places) if isinstance(v, float) else fmt(v)
            numbers.add(text)
            if c.unit:
                text += c.unit if c.unit in ("%", "‰") else f" {c.unit}"
        if c.stderr is not None:
            se = fmt(float(c.stderr), se_places)
            numbers.add(se)
            text += f" ± {se}"
        if c.note:
            text += self.mark(c.note)
        return text

    def mark(self, note: str) -> str:
        """A footnote mark for `note` (the same note, the same mark, within one table)."""
        if note not in self.notes:
            self.notes.append(note)
        return _SUPERSCRIPT[(self.notes.index(note) + 1) % 10] if self.notes.index(note) < 9 else f"[{self.notes.index(note) + 1}]"

    def footnotes(self) -> str | None:
        notes, self.notes = self.notes, []
        if not notes:
            return None
        return " ".join(f"{_SUPERSCRIPT[i] if i < 10 else f'[{i}]'} {n}" for i, n in enumerate(notes, 1))

    def task_table(self, title: str, cells: list[Cell], note: str | None) -> Table:
        metrics = list(dict.fromkeys(c.metric_label for c in cells))
        keys = list(dict.fromkeys((c.subject, c.setup if c.row is not None else None) for c in cells))
        # a subject twice in one table (two setups, same shots): its rows say which setup
        dup = {s for s, _ in keys if sum(1 for k in keys if k[0] == s) > 1}
        grid: dict[tuple, Cell] = {}
        for c in cells:
            grid.setdefault(((c.subject, c.setup if c.row is not None else None), c.metric_label), c)
        places, se_places = {}, {}
        for m in metrics:
            col = [c for c in cells if c.metric_label == m]
            written = [decimals(c.claim.value) for c in col if c.claim is not None and isinstance(c.claim.value, float)]
            places[m] = max(written + [0])
            if any(c.row is not None for c in col):
                places[m] = max(places[m], 4)
            se_places[m] = max([decimals(c.claim.stderr) for c in col if c.claim is not None and c.claim.stderr is not None] + [places[m]])
        base_key = next((k for k in keys if any(_is_baseline(grid[(k, m)]) for m in metrics if (k, m) in grid)), None)
        numeric = {m for m in metrics if all(isinstance(grid[k].value, (int, float)) and not isinstance(grid[k].value, bool) for k in grid if k[1] == m)}
        delta_metrics = [m for m in metrics if m in numeric] if base_key is not None else []
        with_claims = any(c.claim is not None and c.row is not None for c in cells)
        lower = {m for m in metrics if any(c.row is not None and c.row.higher_is_better is False for c in cells if c.metric_label == m)}
        header = ["model"] + metrics + [f"Δ {m} vs baseline" + (" (lower is better)" if m in lower else "") for m in delta_metrics]
        if with_claims:
            header += ["claimed", "verdict"]
        header.append("source")
        numbers: set[str] = set()
        rows = []
        for key in keys:
            subject, setup = key
            some = next(grid[(key, m)] for m in metrics if (key, m) in grid)
            label = self.label(some) + (f" (setup `{setup}`)" if subject in dup and setup else "")
            row = [label]
            for m in metrics:
                c = grid.get((key, m))
                row.append("" if c is None else self.value_text(c, places[m], se_places[m], numbers))
                if c is not None and c.row is not None and c.row.value is not None:
                    self.headlines.append(Headline(subject, c.task, c.num_fewshot, m, row[-1].split(" ± ")[0], c, title))
            for m in delta_metrics:
                c, b = grid.get((key, m)), grid.get((base_key, m))
                if c is None or b is None or key == base_key or (c.claim is not None and c.row is None and c.claim.reference_only) or c.value is None or b.value is None:
                    row.append("")
                    continue
                diff = float(c.value) - float(b.value)
                col = [float(x.value) for x in cells if x.metric_label == m and isinstance(x.value, (int, float))]
                text = f"{diff * 100:+.2f} pp" if is_fraction(col) else f"{diff:+.{places[m]}f}"
                numbers.add(text.split()[0].lstrip("+"))
                row.append(text)
            if with_claims:
                pairs = [grid[(key, m)] for m in metrics if (key, m) in grid and grid[(key, m)].claim is not None and grid[(key, m)].row is not None]
                row += ["; ".join(self.claim_text(c, places[c.metric_label], se_places[c.metric_label], numbers) for c in pairs), "; ".join(c.verdict for c in pairs if c.verdict)]
            row.append("; ".join(dict.fromkeys(_source(grid[(key, m)]) for m in metrics if (key, m) in grid)))
            rows.append(row)
        task = cells[0].task
        extra = self.table_notes.get(title) or self.table_notes.get(task)
        notes = " ".join(x for x in (note, extra, self.footnotes()) if x)
        return Table(title, header, rows, notes or None, numbers)

    def model_table(self, cells: list[Cell], folded: dict) -> Table:
        """One table: a row per model, a column per (task, few-shot, metric)."""
        columns = list(dict.fromkeys((c.task, c.num_fewshot, c.metric_label) for c in cells))
        subjects = list(dict.fromkeys(c.subject for c in cells))
        grid = {}
        for c in cells:
            grid.setdefault((c.subject, c.task, c.num_fewshot, c.metric_label), c)
        numbers: set[str] = set()
        header = ["model"] + [shots_title(t, n) + (f" ({m})" if len({x[2] for x in columns if x[:2] == (t, n)}) > 1 or m not in ("acc", "acc_norm", "score") else "") for t, n, m in columns] + ["source"]
        rows = []
        for s in subjects:
            some = next(grid[k] for k in grid if k[0] == s)
            row = [self.label(some)]
            for t, n, m in columns:
                c = grid.get((s, t, n, m))
                if c is None:
                    row.append("")
                    continue
                written = [decimals(x.claim.value) for x in cells if (x.task, x.num_fewshot, x.metric_label) == (t, n, m) and x.claim is not None and isinstance(x.claim.value, float)]
                places = max(written + ([4] if any(x.row is not None for x in cells if (x.task, x.num_fewshot, x.metric_label) == (t, n, m)) else []) + [0])
                row.append(self.value_text(c, places, max(places, 4), numbers))
                if c.row is not None and c.row.value is not None:
                    self.headlines.append(Headline(s, t, n, m, row[-1].split(" ± ")[0], c, "Results"))
            row.append("; ".join(dict.fromkeys(_source(grid[k]) for k in grid if k[0] == s)))
            rows.append(row)
        notes = " ".join(x for x in (self.table_notes.get("Results"), self.footnotes()) if x)
        table = Table("Results", header, rows, notes or None, numbers)
        for (group, _shots), sub in folded.items():
            for d in self.subtask_tables(group, sub):
                table.details.append(d)
                table.numbers |= d.numbers
        if table.details:
            table.summary = "subtasks of " + ", ".join(dict.fromkeys(g for g, _ in folded))
        return table

    def subtask_tables(self, group: str, cells: list[Cell]) -> list[Table]:
        """A group's subtasks: a row per subtask, a column per subject, one table per metric."""
        out = []
        for m in dict.fromkeys(c.metric_label for c in cells):
            col = [c for c in cells if c.metric_label == m]
            tasks = list(dict.fromkeys(c.task for c in col))
            subjects = list(dict.fromkeys(c.subject for c in col))
            grid = {(c.task, c.subject): c for c in col}
            numbers: set[str] = set()
            rows = []
            for t in tasks:
                row = [t]
                for s in subjects:
                    c = grid.get((t, s))
                    row.append("" if c is None else self.value_text(c, 4, 4, numbers))
                rows.append(row)
            header = ["subtask"] + [self.label(next(c for c in col if c.subject == s)) for s in subjects]
            rows.sort(key=lambda r: (not any(c.row.is_group for c in col if c.task == r[0]),))  # subgroups first
            out.append(Table(f"{group}: {m} by subtask", header, rows, None, numbers))
        return out


def top_group(cell: Cell) -> str | None:
    """The outermost group with a headline that this cell's task is part of (MMLU for
    mmlu_anatomy and for mmlu_stem), or None for a headline of its own."""
    if cell.row is None or cell.record is None:
        return None
    headlines = {r.task: r.group for r in cell.record.rows if r.is_group}
    top, parent = None, cell.row.group
    seen = set()
    while parent in headlines and parent not in seen:
        seen.add(parent)
        top, parent = parent, headlines[parent]
    return top


def results_tables(manifest: Manifest, cells: list[Cell], label, *, layout: str = "by_task", table_notes: dict[str, str] | None = None) -> tuple[list[Table], list[Headline]]:
    """The results tables of an artifact card, and the headline numbers they show.

    `label(cell)` names a row's model ("**this model**", "base: ...", a link). `by_task`: a table
    per task and few-shot; `by_model`: one table, a row per model, a column per task (its
    few-shot and metric in the header), with groups' subtasks folded under it."""
    b = _Builder(manifest, label, table_notes)
    folded: dict[tuple[str, int | None], list[Cell]] = {}
    tables_cells: dict[tuple[str, int | None], list[Cell]] = {}
    for c in cells:
        top = top_group(c)
        if top is not None:
            folded.setdefault((top, c.num_fewshot), []).append(c)
        else:
            tables_cells.setdefault((c.task, c.num_fewshot), []).append(c)
    if layout == "by_model" and tables_cells:
        return [b.model_table([c for items in tables_cells.values() for c in items], folded)], b.headlines
    tables = []
    for (task, shots), items in tables_cells.items():
        coverage = next((cv for c in items if (cv := _coverage(c))), None)
        notes = []
        if any(c.row is not None and c.row.local_data for c in items):
            notes.append("Reproduced numbers were computed on local copies of the task's data (same prompts, targets and metrics).")
        if coverage and coverage.get("missing"):
            notes.append(
                f"Only {len(coverage['included'])} of the {coverage['total']} subtasks of {task} had local data; its score here aggregates those ({', '.join(coverage['included'])}), "
                f"so it is not the {task} score."
            )
        if any(c.row is not None and c.row.value is None for c in items):
            notes.append("An unavailable number is one lm-eval's results file did not give as a finite number; it is shown with the reason, not as a value.")
        t = b.task_table(shots_title(task, shots, coverage_note(coverage)), items, " ".join(notes) or None)
        sub = folded.get((task, shots))
        if sub:
            t.details = b.subtask_tables(task, sub)
            t.summary = f"{len({c.task for c in sub})} subtasks of {task}"
            for d in t.details:
                t.numbers |= d.numbers
        tables.append(t)
    return tables, b.headlines


def report_tables(cells: list[Cell], table_notes: dict[str, str] | None = None) -> list[Table]:
    """Experiment reports: a row per task (and metric, when a task reports several), grouped by
    domain, a column per subject; each row's numbers share the precision of its most precise value."""
    b = _Builder(None, lambda c: c.subject, table_notes)
    subjects = list(dict.fromkeys(c.subject for c in cells))
    # a row per task; per (task, metric) only where one subject reports several metrics of it
    counts: dict[tuple[str, str], set[str]] = {}
    for c in cells:
        counts.setdefault((c.task, c.subject), set()).add(c.metric_label)
    several = {t for (t, _), ms in counts.items() if len(ms) > 1}
    keys = list(dict.fromkeys((c.task, c.metric_label if c.task in several else None) for c in cells))
    by = {(c.task, c.metric_label if c.task in several else None, c.subject): c for c in cells}
    domain = {c.task: c.claim.domain for c in cells if c.claim is not None and c.claim.domain}
    has_domain = bool(domain)
    header = (["domain"] if has_domain else []) + ["task"] + subjects
    rows, numbers = [], set()
    for t, m in keys:
        es = [by[(t, m, s)] for s in subjects if (t, m, s) in by]
        places = max([decimals(e.value) for e in es if isinstance(e.value, float)] + [0])
        row = ([domain.get(t, "")] if has_domain else []) + [f"{t} ({m})" if m else t]
        for s in subjects:
            e = by.get((t, m, s))
            row.append("" if e is None else b.value_text(e, places, places, numbers))
        rows.append(row)
    notes = " ".join(x for x in ((table_notes or {}).get("Results"), b.footnotes()) if x)
    return [Table("Results", header, rows, notes or None, numbers)] if rows else []


def claim_value(cell: Cell) -> float | None:
    return claim_number(cell.claim) if cell.claim is not None else None
