"""The job side of the hf-jobs executor: `python -m hubkit.scaleout.hf_worker --repo R --prefix P`.

Downloads `P/` of the dataset repo R (the pickled unit and its `inputs/`), runs the unit with
`inputs/` as the working directory, and commits `P/result.pkl` (("success", envelope) or
("error", traceback), as every executor writes it) and whatever the unit wrote under
`inputs/outputs/` as `P/outputs/` in one commit. The token comes from the job's HF_TOKEN secret
(huggingface_hub reads it from the environment) and is never printed. Exits 0, or 1 when the
unit failed (its traceback is in the result and in the job's log).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Runs the unit staged under --prefix; returns the process exit status."""
    from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download

    from hubkit.hub.client import hub_session
    from hubkit.scaleout.units import ScaleoutError, dump_pickle

    ap = argparse.ArgumentParser(prog="python -m hubkit.scaleout.hf_worker")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--prefix", required=True)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hubkit-job-"))
    with hub_session(None, error=ScaleoutError, need_network=True):
        folder = Path(snapshot_download(args.repo, repo_type="dataset", allow_patterns=[f"{args.prefix}/*", f"{args.prefix}/**"], local_dir=str(work / "repo")))
    unit_dir = folder / args.prefix
    inputs = unit_dir / "inputs"
    inputs.mkdir(exist_ok=True)
    os.environ["HUBKIT_HF_JOB"] = "1"  # records say where they ran
    os.chdir(inputs)
    code = 0
    try:
        with (unit_dir / "unit.pkl").open("rb") as f:
            call, (fn, fargs, fkwargs) = pickle.load(f)
        outcome = ("success", call(fn, fargs, fkwargs))
    except BaseException:  # noqa: BLE001 - the unit's failure is its result, as on every executor
        outcome = ("error", traceback.format_exc())
        traceback.print_exc()
        code = 1
    result = work / "result.pkl"
    try:
        dump_pickle(outcome, result)
    except Exception:  # noqa: BLE001 - a value that does not pickle is the unit's failure too
        dump_pickle(("error", traceback.format_exc()), result)
        code = 1
    operations = [CommitOperationAdd(path_in_repo=f"{args.prefix}/result.pkl", path_or_fileobj=str(result))]
    outputs = inputs / "outputs"
    if outputs.is_dir():
        for p in sorted(outputs.rglob("*")):
            if p.is_file() and not p.is_symlink():
                operations.append(CommitOperationAdd(path_in_repo=f"{args.prefix}/outputs/{p.relative_to(outputs).as_posix()}", path_or_fileobj=str(p)))
    with hub_session(None, error=ScaleoutError, need_network=True):
        HfApi().create_commit(args.repo, operations, repo_type="dataset", commit_message=f"hubkit unit result ({'ok' if code == 0 else 'failed'})")
    print(f"hubkit: unit {'done' if code == 0 else 'failed'}; result committed to {args.repo}/{args.prefix}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
