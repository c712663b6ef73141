"""Plain-text renderings of results for the terminal (cards use Jinja templates instead)."""

from __future__ import annotations

from .inspection import AdapterFacts, CheckpointFacts, GGUFFacts


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_count(n: int) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def _files(facts) -> list[str]:
    lines = ["files:"]
    for f in facts.files:
        digest = f"  sha256 {f.sha256}" if f.sha256 else ""
        lines.append(f"  {f.path:<36} {human_bytes(f.size):>10}{digest}")
    return lines


def _gguf_lines(facts: GGUFFacts) -> list[str]:
    n_files = sum(len(m.parts) for m in facts.models)
    lines = [f"{facts.path}: GGUF, {len(facts.models)} model file{'s' if len(facts.models) != 1 else ''}" + (f" in {n_files} parts" if n_files != len(facts.models) else "")]
    if facts.architecture:
        lines.append(f"architecture:      {facts.architecture}")
    if facts.params is not None:
        lines.append(f"parameters:        {facts.params:,} ({human_count(facts.params)})")
    if facts.context_length:
        lines.append(f"context length:    {facts.context_length:,}")
    label = {m.path: m.path + (f" ({len(m.parts)} parts)" if len(m.parts) > 1 else "") for m in facts.models}
    width = max(len(text) for text in label.values())
    for m in facts.models:
        own = []
        if m.architecture != facts.architecture:
            own.append(m.architecture or "no architecture")
        if m.params != facts.params:
            own.append(f"{m.params:,} parameters")
        if m.context_length != facts.context_length and m.context_length:
            own.append(f"context {m.context_length:,}")
        bpw = f"{m.bits_per_weight:.2f} bpw" if m.bits_per_weight is not None else "no tensors"
        lines.append(f"{label[m.path]:<{width}}  {m.file_type or 'no file type':<16} {bpw:>10} {human_bytes(m.size):>10}" + (f"  [{'; '.join(own)}]" if own else ""))
        lines.append("    tensors: " + ", ".join(f"{t} x{n}" for t, n in m.tensor_types.items()))
    return lines


def format_facts(facts: AdapterFacts | CheckpointFacts | GGUFFacts) -> str:
    """`hubkit inspect`'s text: one fact a line, then the files with their sizes (and sha256)."""
    if isinstance(facts, GGUFFacts):
        lines = _gguf_lines(facts)
    elif isinstance(facts, AdapterFacts):
        scale = "alpha/sqrt(r)" if facts.use_rslora else "alpha/r"
        lines = [
            f"{facts.path}: {facts.peft_type} adapter",
            f"base model:        {facts.base_model or '(not recorded)'}"
            + (f" @ {facts.base_model_revision}" if facts.base_model_revision else ""),
            f"rank r:            {facts.r}",
            f"alpha:             {facts.lora_alpha:g}  (scaling {facts.scaling:g} = {scale})",
            f"dropout:           {facts.lora_dropout:g}",
            f"rslora / dora:     {'yes' if facts.use_rslora else 'no'} / {'yes' if facts.use_dora else 'no'}",
            f"target modules:    {', '.join(facts.module_types)} ({len(facts.module_types)} types)",
            f"adapted modules:   {facts.adapted_modules}",
            f"trainable params:  {facts.trainable_params:,} ({human_count(facts.trainable_params)})",
            f"dtype:             {', '.join(facts.dtypes)}",
        ]
        if facts.rank_pattern or facts.alpha_pattern:
            lines.append(f"patterns:          rank {facts.rank_pattern or '-'}; alpha {facts.alpha_pattern or '-'}")
        if facts.modules_to_save:
            lines.append(f"modules to save:   {', '.join(facts.modules_to_save)}")
        if facts.tokenizer_files:
            lines.append(f"tokenizer files:   {', '.join(facts.tokenizer_files)}")
    else:
        lines = [
            f"{facts.path}: checkpoint ({', '.join(facts.architectures) or facts.model_type or 'unknown architecture'})",
            f"parameters:        {facts.params:,} ({human_count(facts.params)})",
            f"dtype:             {', '.join(facts.dtypes)} (config: {facts.config_dtype or '-'})",
            f"layers / hidden:   {facts.num_layers} / {facts.hidden_size}; vocab {facts.vocab_size}",
            f"tied embeddings:   {facts.tie_word_embeddings}",
            f"shards:            {len(facts.shards)} ({', '.join(facts.shards)})",
        ]
        if facts.merge_record:
            lines.append(f"merged from:       {facts.merge_record.get('adapter', '?')} into {facts.merge_record.get('base', '?')}")
        if facts.quantization:
            lines.append("quantization:      " + ", ".join(f"{k}={v}" for k, v in facts.quantization.items()))
    lines += _files(facts)
    return "\n".join(lines)


def _num(x: float | None, se: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" + (f" ± {se:.4f}" if se is not None else "")


def format_runs(records, *, all_rows: bool = False) -> str:
    """`hubkit runs`: a line per (run, headline number); a group's subtasks only with all_rows."""
    header = ("run", "status", "setup", "subject", "strategy", "task", "shots", "metric", "value ± stderr")
    lines: list[tuple[str, ...]] = [header]
    for rec in records:
        strategy = "imported" if rec.origin == "imported" else (rec.strategy or "-")
        base = (rec.run_id, rec.status, rec.setup, rec.subject, strategy)
        shown = [r for r in rec.rows if all_rows or r.is_group or r.group is None or not any(g.is_group and g.task == r.group for g in rec.rows)]
        if not shown:
            reason = "" if rec.ok else (rec.fallback_reason or "failed")
            lines.append((*base, reason[:60], "", "", ""))
        for r in shown:
            task = ("- " if r.group and not r.is_group else "") + r.task
            value = _num(r.value, r.stderr) if r.value is not None else f"unavailable ({r.unavailable})"
            lines.append((*base, task, "" if r.num_fewshot is None else str(r.num_fewshot), r.metric_label, value))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)


def runs_json(records, problems: list[str]) -> dict:
    """`hubkit runs --json`: each record's identity and result rows, and damaged records."""
    return {
        "runs": [
            {
                "run_id": r.run_id, "status": r.status, "origin": r.origin, "setup": r.setup, "subject": r.subject,
                "strategy": r.strategy, "started_at": r.started_at, "duration_s": r.duration_s, "lm_eval_version": r.lm_eval_version,
                "sealed": r.sealed, "path": str(r.path), "rows": [row.model_dump() for row in r.rows],
            }
            for r in records
        ],
        "damaged": problems,
    }
