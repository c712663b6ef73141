"""Pinned, recorded lm-eval reruns with a 4-bit -> merged fallback. See `core.run_eval`."""

from .core import EvalOutcome, run_eval
from .records import RecordError, RunRecord, RunStore, list_records, load_record
from .results import ResultRow, parse_results
from .summary import summarize

__all__ = ["EvalOutcome", "RecordError", "ResultRow", "RunRecord", "RunStore", "list_records", "load_record", "parse_results", "run_eval", "summarize"]
