"""The process LocalExecutor starts for one unit: `python -m hubkit.scaleout._worker ATTEMPT_DIR`.

Reads ATTEMPT_DIR/unit.pkl, runs it, writes ATTEMPT_DIR/result.pkl as ("success", envelope) or
("error", traceback), the same outcome format submitit writes for Slurm jobs. Exits 0 or 1.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from pathlib import Path


def _watch_parent(parent: int) -> None:
    # A unit must not outlive the run that started it: an orphan would keep its GPUs busy and
    # could race a rerun of the same unit. Polling getppid() works on every POSIX system.
    while True:
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        time.sleep(1.0)


def main(argv: list[str]) -> int:
    """Runs the unit in argv[0]; returns the process exit status."""
    from hubkit.scaleout.units import dump_pickle

    attempt = Path(argv[0])
    parent = os.environ.get("HUBKIT_SCALEOUT_PARENT")
    if parent and parent.isdigit():
        threading.Thread(target=_watch_parent, args=(int(parent),), daemon=True).start()
    try:
        with (attempt / "unit.pkl").open("rb") as f:
            call, (fn, args, kwargs) = pickle.load(f)
        # Inside the try: a return value that does not pickle is the unit's failure too.
        dump_pickle(("success", call(fn, args, kwargs)), attempt / "result.pkl")
    except BaseException:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
        dump_pickle(("error", traceback.format_exc()), attempt / "result.pkl")
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
