"""Run units as Hugging Face Jobs (huggingface_hub's Jobs API), exchanging files through a Hub repo.

A job cannot see this machine, so each unit travels through a (private) dataset repo: its
pickled call under `units/<unit>/<attempt>/unit.pkl`, with an `inputs/` folder the unit's
`stage` hook may fill (what the job needs from here: a manifest, adapters, data). The job runs
`python -m hubkit.scaleout.hf_worker`, which downloads that folder, runs the unit in it and
commits `result.pkl` (the outcome, in the format every executor uses) and what the unit wrote
under `outputs/` back to the same place. A done unit's result and outputs are downloaded into
`<folder>/<unit>/<attempt>/`.

The token reaches the job as a job secret (`HF_TOKEN`), never in its command, its environment
or a file; job logs kept here are redacted. By default the job installs hubkit with uv
(`run_uv_job`: `uv run --with hubkit-ml[eval]==<version> python -m hubkit.scaleout.hf_worker`);
`launcher="command"` runs the same worker with `run_job` in an image that already has hubkit.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hubkit.scaleout.units import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Handle,
    ScaleoutError,
    Unit,
    UnitStatus,
    call_unit,
    dump_pickle,
    outcome_value,
    poll_until_ended,
    read_outcome,
    settle_from_outcome,
    tail,
)

WORKER = "hubkit.scaleout.hf_worker"
DEFAULT_IMAGE_COMMAND = "python:3.12"
_STAGES = {"SCHEDULING": QUEUED, "RUNNING": RUNNING, "COMPLETED": DONE, "ERROR": FAILED, "CANCELED": CANCELLED, "DELETED": CANCELLED}

# stage(unit, inputs_dir) -> the unit to pickle, rewritten to read what was staged
Stage = Callable[[Unit, Path], Unit]


def _job_name(unit_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"hubkit-{unit_id}")[:96]


class HfJobsExecutor:
    """Submits units as Hugging Face Jobs and follows them with `inspect_job`.

    `endpoint` and `token` are the Hub's (default: HF_ENDPOINT and the logged-in token);
    `namespace` runs the jobs (default: the token's user); `repo_id` is the exchange dataset repo
    (default: `<namespace>/hubkit-jobs`, created private). `flavor` is the hardware; a unit's
    time_min becomes the job timeout unless `timeout` ('2h') is given. `requirement` is what uv
    installs for hubkit (default `hubkit-ml[eval]==<this version>`); `launcher="command"` uses
    `run_job` with `image` and `python` instead (an image with hubkit installed). `stage`
    prepares a unit's inputs (see Stage).
    """

    name = "hf-jobs"

    def __init__(
        self,
        folder: str | Path,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        namespace: str | None = None,
        repo_id: str | None = None,
        flavor: str = "cpu-basic",
        image: str | None = None,
        requirement: str | None = None,
        timeout: str | None = None,
        launcher: str = "uv",
        python: str = "python",
        stage: Stage | None = None,
        env: dict[str, str] | None = None,
        poll_interval: float = 10.0,
    ):
        from huggingface_hub import HfApi, get_token

        from hubkit import __version__
        from hubkit.hub.client import effective_endpoint

        if launcher not in ("uv", "command"):
            raise ScaleoutError(f"unknown launcher {launcher!r}: expected 'uv' or 'command'")
        self.folder = Path(folder).absolute()
        self.endpoint = effective_endpoint(endpoint)
        self._token = token or get_token()
        if not self._token:
            raise ScaleoutError(
                "the hf-jobs executor needs a Hugging Face token (jobs run under your account)",
                hint="Log in with `hf auth login`, or set HF_TOKEN.",
            )
        self.api = HfApi(endpoint=self.endpoint, token=self._token)
        self.flavor, self.image, self.timeout, self.launcher, self.python = flavor, image, timeout, launcher, python
        self.requirement = requirement or f"hubkit-ml[eval]=={__version__}"
        self.stage = stage
        self.extra_env = dict(env or {})
        self.poll_interval = poll_interval
        with self._session():
            self.namespace = namespace or self.api.whoami()["name"]
        self.repo_id = repo_id or f"{self.namespace}/hubkit-jobs"
        self._status: dict[str, UnitStatus] = {}
        self._prefix: dict[str, str] = {}

    def _session(self):
        from hubkit.hub.client import hub_session

        return hub_session(self.endpoint, error=ScaleoutError, need_network=True)

    def _call(self, what: str, fn, *args, **kwargs):
        """Calls the Hub; its errors become one ScaleoutError (never the token)."""
        from huggingface_hub.errors import HfHubHTTPError

        from hubkit.secrets import redact_text

        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        quiet = are_progress_bars_disabled()
        disable_progress_bars()  # the live view shows the units; upload bars would scroll it away
        with self._session():
            try:
                return fn(*args, **kwargs)
            except HfHubHTTPError as e:
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ScaleoutError(f"{what}: {redact_text(first, [self._token])}", hint="Check the token's access to the namespace and repo.") from None
            finally:
                if not quiet:
                    enable_progress_bars()

    # -- Executor interface -------------------------------------------------------------------

    def submit(self, units: Iterable[Unit]) -> list[Handle]:
        """Stages each unit in the exchange repo (one commit each) and starts its job. Returns
        a handle per unit (job id); raises ScaleoutError when the Hub refuses."""
        units = list(units)
        self._call(f"creating {self.repo_id}", self.api.create_repo, self.repo_id, repo_type="dataset", private=True, exist_ok=True)
        handles = []
        for unit in units:
            current = self._status.get(unit.id)
            if current is not None and not current.terminal:
                raise ScaleoutError(f"unit {unit.id} is already {current.state} as job {current.job_id}")
            attempt = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            local = self.folder / unit.id / attempt
            inputs = local / "inputs"
            inputs.mkdir(parents=True)
            staged = self.stage(unit, inputs) if self.stage else unit
            dump_pickle((call_unit, (staged.fn, tuple(staged.args), dict(staged.kwargs))), local / "unit.pkl")
            prefix = f"units/{unit.id}/{attempt}"
            self._call(
                f"uploading unit {unit.id} to {self.repo_id}", self.api.upload_folder, folder_path=str(local),
                path_in_repo=prefix, repo_id=self.repo_id, repo_type="dataset", commit_message=f"hubkit unit {unit.id}",
            )  # fmt: skip
            job = self._start(unit, prefix)
            self._prefix[unit.id] = prefix
            self._status[unit.id] = UnitStatus(
                unit_id=unit.id, state=QUEUED, executor=self.name, job_id=job.id, submitted_at=time.time(),
                logs={"stdout": str(local / "job.log"), "job": job.url, "repo": f"{self.repo_id}/{prefix}"},
                result=str(local / "result.pkl"),
            )  # fmt: skip
            handles.append(Handle(unit.id, job.id, dict(self._status[unit.id].logs), str(local / "result.pkl")))
        return handles

    def _job_spec(self, unit: Unit, prefix: str) -> dict[str, Any]:
        """The arguments of `run_uv_job` / `run_job` for a unit (the token only as a secret)."""
        args = ["-m", WORKER, "--repo", self.repo_id, "--prefix", prefix]
        env = {"HF_HUB_OFFLINE": "0", "HUBKIT_UNIT_ID": unit.id, **self.extra_env}
        if self.endpoint != "https://huggingface.co":
            env["HF_ENDPOINT"] = self.endpoint
        from huggingface_hub import constants

        if constants.HF_HUB_DISABLE_XET:
            env["HF_HUB_DISABLE_XET"] = "1"
        spec: dict[str, Any] = {
            "env": env, "secrets": {"HF_TOKEN": self._token}, "flavor": self.flavor,
            "timeout": self.timeout or f"{unit.resources.time_min}m", "namespace": self.namespace,
            "labels": {"hubkit-unit": re.sub(r"[^A-Za-z0-9._-]", "-", unit.id)[:63]}, "name": _job_name(unit.id),
        }  # fmt: skip
        if self.launcher == "uv":
            spec.update(script="python", script_args=args, dependencies=[self.requirement])
            if self.image:
                spec["image"] = self.image
        else:
            spec.update(image=self.image or DEFAULT_IMAGE_COMMAND, command=[self.python, *args])
        return spec

    def _start(self, unit: Unit, prefix: str):
        spec = self._job_spec(unit, prefix)
        if self.launcher == "uv":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # run_uv_job is marked experimental
                return self._call(f"starting the job of unit {unit.id}", self.api.run_uv_job, spec.pop("script"), **spec)
        return self._call(f"starting the job of unit {unit.id}", self.api.run_job, **spec)

    def poll(self) -> dict[str, UnitStatus]:
        """Asks the Hub about every unfinished unit; a finished job's result (and outputs) are
        downloaded, a failed one's log kept. Returns every status (copies)."""
        for status in self._status.values():
            if status.terminal:
                continue
            info = self._call(f"inspecting job {status.job_id}", self.api.inspect_job, job_id=status.job_id, namespace=self.namespace)
            self._apply(status, info)
        return {u: UnitStatus(**s.to_json()) for u, s in self._status.items()}

    def _apply(self, status: UnitStatus, info) -> None:
        stage = str(getattr(info.status.stage, "value", info.status.stage))
        state = _STAGES.get(stage, QUEUED)
        if info.started_at is not None and status.started_at is None:
            status.started_at = info.started_at.timestamp()
        if state in (QUEUED, RUNNING):
            status.state = state
            return
        local = Path(status.result).parent
        self._save_log(status)
        if state == DONE and self._download(status.unit_id, local):
            outcome = read_outcome(status.result)
            if outcome is not None:
                settle_from_outcome(status, outcome, ended=info.finished_at.timestamp() if info.finished_at else None)
                return
        status.state = CANCELLED if state == CANCELLED else FAILED
        status.ended_at = info.finished_at.timestamp() if info.finished_at else time.time()
        message = info.status.message or ("completed without a result" if state == DONE else stage.lower())
        status.error = f"HF job {status.job_id} {stage}: {message}\n{tail(status.logs.get('stdout'))}".strip()

    def _download(self, unit_id: str, local: Path) -> bool:
        from huggingface_hub import snapshot_download

        prefix = self._prefix[unit_id]
        scratch = local / ".download"
        folder = self._call(
            f"downloading the result of unit {unit_id}", snapshot_download, self.repo_id, repo_type="dataset",
            allow_patterns=[f"{prefix}/result.pkl", f"{prefix}/outputs/*", f"{prefix}/outputs/**"], local_dir=str(scratch),
            endpoint=self.endpoint, token=self._token,
        )  # fmt: skip
        got = Path(folder) / prefix
        if not (got / "result.pkl").is_file():
            return False
        shutil.move(str(got / "result.pkl"), local / "result.pkl")
        if (got / "outputs").is_dir():
            shutil.rmtree(local / "outputs", ignore_errors=True)
            shutil.move(str(got / "outputs"), local / "outputs")
        shutil.rmtree(scratch, ignore_errors=True)
        return True

    def _save_log(self, status: UnitStatus) -> None:
        from hubkit.secrets import redact_text

        try:
            lines = self._call(f"fetching the log of job {status.job_id}", lambda: list(self.api.fetch_job_logs(job_id=status.job_id, namespace=self.namespace)))
        except ScaleoutError:
            return
        Path(status.logs["stdout"]).write_text(redact_text("\n".join(lines) + "\n", [self._token]), encoding="utf-8")

    def cancel(self, unit_id: str) -> None:
        """Cancels the unit's job; the next poll reports it cancelled."""
        status = self._status.get(unit_id)
        if status is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        if not status.terminal and status.job_id:
            self._call(f"cancelling job {status.job_id}", self.api.cancel_job, job_id=status.job_id, namespace=self.namespace)

    def wait(self, timeout: float | None = None) -> dict[str, UnitStatus]:
        """Polls every `poll_interval` seconds until every unit ended (or `timeout` passed)."""
        return poll_until_ended(self, timeout)

    def attach(self, status: UnitStatus) -> bool:
        """Follows a unit an earlier process submitted: True while its job is queued or running
        (or it finished with a result), False when it must be submitted again."""
        if not status.job_id or not status.result or "repo" not in status.logs:
            return False
        status = UnitStatus(**status.to_json())
        repo, _, prefix = status.logs["repo"].partition("/units/")
        if repo != self.repo_id:
            return False
        self._prefix[status.unit_id] = "units/" + prefix
        try:
            info = self._call(f"inspecting job {status.job_id}", self.api.inspect_job, job_id=status.job_id, namespace=self.namespace)
        except ScaleoutError:
            return False
        Path(status.result).parent.mkdir(parents=True, exist_ok=True)
        self._apply(status, info)
        if status.state in (FAILED, CANCELLED):
            return False
        self._status[status.unit_id] = status
        return True

    def result(self, unit_id: str) -> Any:
        """Returns a done unit's return value; raises UnitFailed otherwise."""
        status = self._status.get(unit_id)
        if status is None:
            raise ScaleoutError(f"no unit {unit_id} in this executor")
        return outcome_value(status)

    def outputs(self, unit_id: str) -> Path | None:
        """The folder of what a done unit wrote under `outputs/`, downloaded; None if none."""
        status = self._status.get(unit_id)
        if status is None or not status.result:
            return None
        folder = Path(status.result).parent / "outputs"
        return folder if folder.is_dir() else None

