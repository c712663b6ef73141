"""Plain-text renderings of results for the terminal (cards use Jinja templates instead)."""

from __future__ import annotations

from .inspection import AdapterFacts, CheckpointFacts


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


def format_facts(facts: AdapterFacts | CheckpointFacts) -> str:
    if isinstance(facts, AdapterFacts):
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
    lines += _files(facts)
    return "\n".join(lines)
