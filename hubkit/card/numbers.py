"""How numbers look on a card: as written for claims, fixed places for reproduced values."""

from __future__ import annotations

import math
import re
from typing import Any


def decimals(x: Any) -> int:
    """Digits after the point in the shortest repr of a float (0.060 parses to 0.06: 2)."""
    if isinstance(x, bool) or not isinstance(x, float):
        return 0
    text = repr(x)
    if "e" in text or "." not in text:
        return 0
    return len(text.split(".")[1].rstrip("0")) if not text.endswith(".0") else 0


def fmt(x: Any, places: int | None = None) -> str:
    """A value as the card shows it: bools as words, ints with thousands separators, floats
    with `places` decimals (default: as written)."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "True" if x else "False"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if "e" in repr(x) and places is None:  # 5e-06 -> 5e-6, as people write learning rates
            return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(x)).replace("e+", "e")
        return f"{x:.{decimals(x) if places is None else places}f}"
    return str(x)


def human(n: int | float) -> str:
    """41943040 -> '41.94 M', 3794014208 -> '3.79 B'."""
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def is_fraction(values: list) -> bool:
    """Whether every value is a share in [0, 1] (differences then read as percentage points)."""
    return all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)
