"""The Hub's Jobs API on the local hub: what `HfApi.run_job`, `run_uv_job`, `inspect_job`,
`list_jobs`, `fetch_job_logs` and `cancel_job` send, stored and answered as the Hub does.

A job is kept under `root/jobs/<namespace>/<id>/` (`job.json`: the spec as received, secret
values left out; `log.jsonl`: its log lines). Secret values are held in memory only, handed to
the job's process as environment variables and redacted from its log before it is stored.

By default nothing runs: a job is accepted, then ends in ERROR saying this hub does not run
jobs. A hub started with `run_jobs=True` (Python API only: tests, a trusted single-user
machine) runs each job's command on this machine, ignoring the image, in a scratch folder
under the job's own, with the hub's environment plus the job's `environment` and `secrets`;
its stage goes SCHEDULING, RUNNING, then COMPLETED (exit 0), ERROR or CANCELED, and a job past
its `timeoutSeconds` is stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets as _secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_JOB_ID = re.compile(r"[0-9a-f]{24}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9._/-]{1,128}")
TERMINAL = ("COMPLETED", "CANCELED", "ERROR", "DELETED")
NOT_RUN = "this local hub stores jobs but does not run them (a hub started with run_jobs=True runs them on its machine)"
MAX_ITEMS = 256
MAX_STRING = 64 * 1024


class JobError(Exception):
    """A request the Jobs API refuses: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def namespace(value: object) -> str:
    """A user or organization name; raises JobError(400) otherwise."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or "--" in value or ".." in value:
        raise JobError(400, "invalid namespace")
    return value


def job_id(value: object) -> str:
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        raise JobError(404, "Job not found")
    return value


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS or not all(isinstance(v, str) and len(v) <= MAX_STRING for v in value):
        raise JobError(400, f"{what} must be a list of strings")
    return list(value)


def _mapping(value: object, what: str, key: re.Pattern) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ITEMS:
        raise JobError(400, f"{what} must be an object of strings")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not key.fullmatch(k):
            raise JobError(400, f"{what}: invalid name {str(k)[:64]!r}")
        if not isinstance(v, (str, int, float, bool)) or len(str(v)) > MAX_STRING:
            raise JobError(400, f"{what}.{k} must be a string")
        out[k] = v if isinstance(v, str) else json.dumps(v)
    return out


def validate_spec(body: dict) -> tuple[dict, dict[str, str]]:
    """The job spec to store and the secrets to hold in memory, from a `run_job` body.
    Raises JobError(400) naming the first field at fault."""
    from huggingface_hub import JobHardware

    command = _strings(body.get("command"), "command")
    if not command:
        raise JobError(400, "command must not be empty")
    arguments = _strings(body.get("arguments", []), "arguments")
    environment = _mapping(body.get("environment"), "environment", _ENV_NAME)
    secret_values = _mapping(body.get("secrets"), "secrets", _ENV_NAME)
    flavor = body.get("flavor", "cpu-basic")
    if flavor not in {h.value for h in JobHardware}:
        raise JobError(400, f"unknown flavor {str(flavor)[:64]!r}")
    image, space = body.get("dockerImage"), body.get("spaceId")
    if (image is None) == (space is None) or not isinstance(image or space, str) or len(image or space) > 512:
        raise JobError(400, "give exactly one of dockerImage or spaceId")
    timeout = body.get("timeoutSeconds")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
        raise JobError(400, "timeoutSeconds must be a positive integer")
    labels = _mapping(body.get("labels"), "labels", _LABEL_KEY)
    spec = {
        "command": command, "arguments": arguments, "environment": environment, "flavor": flavor,
        "secretNames": sorted(secret_values), "labels": labels or None, "timeoutSeconds": timeout,
        "dockerImage": image, "spaceId": space,
    }  # fmt: skip
    for key in ("volumes", "attempts", "expose", "ssh", "network", "resourceGroupId"):
        if key in body:
            spec[key] = body[key]
    return spec, secret_values


class Jobs:
    """The jobs of one hub: stored under `root/jobs`, run here when `run` is true."""

    def __init__(self, root: Path, confine: Callable[..., Path], *, run: bool = False):
        self.root, self.confine, self.run = root, confine, run
        self.received: list[dict] | None = None  # set to a list by a recording LocalHub
        self.lock = threading.RLock()
        self._secrets: dict[str, dict[str, str]] = {}
        self._procs: dict[str, subprocess.Popen] = {}

    def _dir(self, ns: str, jid: str) -> Path:
        return self.confine("jobs", namespace(ns), job_id(jid))

    def _read(self, ns: str, jid: str) -> dict:
        path = self._dir(ns, jid) / "job.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            raise JobError(404, "Job not found") from None

    def _write(self, ns: str, job: dict) -> None:
        d = self._dir(ns, job["id"])
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "job.json.tmp"
        tmp.write_text(json.dumps(job, indent=1))
        os.replace(tmp, d / "job.json")

    def _update(self, ns: str, jid: str, **fields) -> dict:
        with self.lock:
            job = self._read(ns, jid)
            if job["status"]["stage"] in TERMINAL and fields.get("status", {}).get("stage") not in (None, "DELETED"):
                return job  # a cancelled job stays cancelled when its process ends
            for k, v in fields.items():
                job[k] = v
            self._write(ns, job)
            return job

    # -- API ---------------------------------------------------------------------------------
    def create(self, ns: str, body: dict, owner: str) -> dict:
        """Stores a new job (and starts it when this hub runs jobs); returns its JobInfo."""
        ns = namespace(ns)
        spec, secret_values = validate_spec(body)
        jid = _secrets.token_hex(12)
        job = {
            "id": jid, "createdAt": _now(), **spec,
            "status": {"stage": "SCHEDULING", "message": None},
            "owner": {"id": "0" * 24, "name": ns, "type": "user" if ns == owner else "org"},
            "initiator": {"type": "user", "id": "0" * 24, "name": owner},
        }  # fmt: skip
        with self.lock:
            self._write(ns, job)
            (self._dir(ns, jid) / "log.jsonl").touch()
        if self.run:
            self._secrets[jid] = secret_values
            threading.Thread(target=self._execute, args=(ns, jid), name=f"hubkit-job-{jid}", daemon=True).start()
        else:
            job = self._update(ns, jid, status={"stage": "ERROR", "message": NOT_RUN}, finishedAt=_now())
        return self.info(job)

    def get(self, ns: str, jid: str) -> dict:
        return self.info(self._read(namespace(ns), job_id(jid)))

    def list(self, ns: str) -> list[dict]:
        folder = self.confine("jobs", namespace(ns))
        out = []
        if folder.is_dir():
            for d in sorted(folder.iterdir()):
                if _JOB_ID.fullmatch(d.name) and (d / "job.json").is_file():
                    out.append(self.info(self._read(ns, d.name)))
        return sorted(out, key=lambda j: j["createdAt"], reverse=True)

    def cancel(self, ns: str, jid: str) -> None:
        job = self._read(namespace(ns), job_id(jid))
        if job["status"]["stage"] in TERMINAL:
            return
        self._update(ns, jid, status={"stage": "CANCELED", "message": "Canceled by user"}, finishedAt=_now())
        proc = self._procs.get(jid)
        if proc is not None and proc.poll() is None:
            _kill(proc)

    def logs(self, ns: str, jid: str, tail: int | None = None) -> list[dict]:
        """The job's log events ({timestamp, data}), the last `tail` of them when given."""
        path = self._dir(namespace(ns), job_id(jid)) / "log.jsonl"
        if not path.is_file():
            raise JobError(404, "Job not found")
        events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return events[-tail:] if tail else events

    @staticmethod
    def info(job: dict) -> dict:
        """The JobInfo object the Hub answers with (secret names, never values)."""
        out = {k: v for k, v in job.items() if k not in ("secretNames", "timeoutSeconds")}
        out["secrets"] = {name: None for name in job.get("secretNames", [])} or None
        started = job.get("startedAt")
        if started:
            end = job.get("finishedAt") or _now()
            out["durations"] = {"runningSecs": int(_seconds(started, end)), "totalSecs": int(_seconds(job["createdAt"], end))}
        return out

    # -- running ---------------------------------------------------------------------------------
    def _log(self, ns: str, jid: str, text: str) -> None:
        values = [v for v in self._secrets.get(jid, {}).values() if v]
        from ..secrets import redact_text

        line = json.dumps({"timestamp": _now(), "data": redact_text(text, values)})
        with (self._dir(ns, jid) / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _execute(self, ns: str, jid: str) -> None:
        job = self._read(ns, jid)
        work = self._dir(ns, jid) / "work"
        work.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(job["environment"])
        env.update(self._secrets.get(jid, {}))
        env["JOB_ID"] = jid
        try:
            self._log(ns, jid, "===== Job started =====")
            proc = subprocess.Popen(
                [*job["command"], *job["arguments"]], cwd=work, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self._log(ns, jid, f"could not start the command: {exc}")
            self._update(ns, jid, status={"stage": "ERROR", "message": f"could not start the command: {exc}"}, finishedAt=_now())
            self._secrets.pop(jid, None)
            return
        self._procs[jid] = proc
        self._update(ns, jid, status={"stage": "RUNNING", "message": None}, startedAt=_now())
        deadline = time.monotonic() + job["timeoutSeconds"] if job.get("timeoutSeconds") else None
        timed_out = threading.Event()
        if deadline is not None:
            def watchdog():
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        timed_out.set()
                        _kill(proc)
                        return
                    time.sleep(0.2)

            threading.Thread(target=watchdog, daemon=True).start()
        assert proc.stdout is not None
        for line in proc.stdout:
            self._log(ns, jid, line.rstrip("\n"))
        code = proc.wait()
        self._procs.pop(jid, None)
        if timed_out.is_set():
            stage, message = "ERROR", f"Job timed out after {job['timeoutSeconds']}s"
        elif code == 0:
            stage, message = "COMPLETED", None
        else:
            stage, message = "ERROR", f"Job failed with exit code {code}"
        self._update(ns, jid, status={"stage": stage, "message": message}, finishedAt=_now())
        self._secrets.pop(jid, None)

    def close(self) -> None:
        """Stops every running job (the hub is stopping)."""
        for jid, proc in list(self._procs.items()):
            if proc.poll() is None:
                _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _seconds(a: str, b: str) -> float:
    parse = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return max(0.0, (parse(b) - parse(a)).total_seconds())


def sse(events: list[dict[str, Any]]) -> bytes:
    """Server-sent events as the Hub streams job logs."""
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
