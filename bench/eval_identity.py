"""Benchmark: how long `hubkit eval` spends identifying the weights of a setup's subjects
(the base, and base + each adapter) before it can look up its cache, on a real-size base.

The weights record holds the sha256 of every base shard. Each subject used to hash the base
itself; now the base is hashed once per run and shared. In one run, alternating:
  per-subject: the base hashed for each of the N+1 subjects (the earlier behaviour)
  shared:      hubkit's `_base_weights` once, then each subject's own files

    python bench/eval_identity.py --base /tmp/hubkit-bench/base --adapter /tmp/hubkit-bench/adapter [--adapters 2] [--repeat 3]

(`bench/merge_vs_peft.py --work /tmp/hubkit-bench` builds that 1.1 B base and adapter.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from hubkit.eval.core import Subject, _base_weights, _weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--adapter", type=Path, required=True)
    ap.add_argument("--adapters", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    subjects = [Subject("base", None, str(args.base), None)] + [Subject(f"a{i}", None, str(args.base), None, adapter=args.adapter) for i in range(args.adapters)]
    per_subject, shared = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        old = [_weights(s, _base_weights(s)) for s in subjects]
        per_subject.append(time.perf_counter() - t)
        t = time.perf_counter()
        base = _base_weights(subjects[0])
        new = [_weights(s, base) for s in subjects]
        shared.append(time.perf_counter() - t)
        assert old == new
    size = sum(p.stat().st_size for p in args.base.glob("*.safetensors")) / 1e9
    a, b = statistics.median(per_subject), statistics.median(shared)
    print(f"base {size:.2f} GB, {len(subjects)} subjects: per-subject {a:.2f} s, shared {b:.2f} s, ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
