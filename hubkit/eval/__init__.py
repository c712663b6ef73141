"""Pinned, recorded lm-eval reruns with a 4-bit -> merged fallback. See `core.run_eval`."""

from .core import EvalOutcome, run_eval
from .records import RunRecord, list_records, load_record, normalize_results, results_table
from .summary import summarize

__all__ = ["EvalOutcome", "RunRecord", "list_records", "load_record", "normalize_results", "results_table", "run_eval", "summarize"]
