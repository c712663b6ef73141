"""Eval environments: the current interpreter, or an isolated uv venv made from a setup's pins.

A pinned environment lives in `$HUBKIT_HOME/envs/<key>/`, where the key hashes the pins, the
Python version and the platform; it is reused when its completion marker is there, so the
second run of a setup pays nothing. What was installed is locked (`uv pip freeze`) and read back
(`probe.py`), then compared with what was requested: a mismatch is reported, never hidden.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import EnvError

PROBE = Path(__file__).with_name("probe.py")
MARKER = ".hubkit-env.json"
ENV_FORMAT = 1

# Distribution names as users write them -> import/metadata names the probe reports.
CANONICAL = {"lm-eval": "lm_eval", "lm_eval": "lm_eval"}


def hubkit_home() -> Path:
    return Path(os.environ.get("HUBKIT_HOME") or Path.home() / ".cache" / "hubkit")


def _canon(name: str) -> str:
    base = name.split("[", 1)[0].strip().lower()
    return CANONICAL.get(base, base.replace("-", "_"))


@dataclass
class EvalEnv:
    kind: str  # "current" | "pinned"
    python: str
    key: str | None
    path: str | None
    requested: dict[str, str]
    installed: dict[str, str | None]
    mismatches: list[str]
    probe: dict
    lock: str | None = None  # `uv pip freeze` of a pinned env
    created: bool = False  # made by this call (cold) rather than reused (warm)
    setup_seconds: float = 0.0
    install_command: list[str] = field(default_factory=list)

    def version(self, package: str) -> str | None:
        return self.installed.get(_canon(package))

    def to_record(self) -> dict:
        data = asdict(self)
        data.pop("probe")
        return data


def run_probe(python: str) -> dict:
    """Versions and hardware as seen from inside the environment of `python`."""
    proc = subprocess.run([python, str(PROBE)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise EnvError(f"{python}: environment probe failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def find_links() -> list[str]:
    """The find-links pip uses here (env and pip config), which uv does not read by itself.

    On machines with a local torch wheel this is what keeps uv from resolving a CUDA torch.
    """
    links: list[str] = []
    env = os.environ.get("PIP_FIND_LINKS")
    if env:
        links += env.split()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True, timeout=30
        ).stdout
        links += out.split()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return [link for i, link in enumerate(links) if link not in links[:i] and (Path(link).exists() or "://" in link)]


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise EnvError("uv is not installed", hint="pip install uv (it ships with `hubkit-ml[eval]`).")


def requirements_for(pins: dict[str, str], *, needs_4bit: bool) -> list[str]:
    """Requirement strings for a pin set, completed with what every eval needs.

    lm-eval comes with its `hf` extra (bare lm-eval stopped bringing torch/transformers in late
    2025); peft and accelerate are added unpinned when not pinned; torch, when not pinned, is held
    at the version this interpreter has, so a local CPU wheel is reused instead of a CUDA download.
    """
    reqs: dict[str, str] = {}
    for name, spec in pins.items():
        spec = spec.strip()
        if spec and spec[0].isdigit():
            spec = "==" + spec
        key = _canon(name)
        dist = "lm-eval[hf]" if key == "lm_eval" else name
        reqs[key] = f"{dist}{spec}"
    reqs.setdefault("lm_eval", "lm-eval[hf]")
    reqs.setdefault("peft", "peft")
    reqs.setdefault("accelerate", "accelerate")
    if needs_4bit:
        reqs.setdefault("bitsandbytes", "bitsandbytes")
    if "torch" not in reqs:
        try:
            reqs["torch"] = f"torch=={metadata.version('torch').split('+')[0]}"
        except metadata.PackageNotFoundError:
            pass
    return [reqs[k] for k in sorted(reqs)]


def env_key(requirements: list[str], exclude_newer: str | None) -> str:
    ident = {
        "format": ENV_FORMAT,
        "requirements": requirements,
        "exclude_newer": exclude_newer,
        "python": platform.python_version(),
        "platform": platform.machine(),
        "find_links": find_links(),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def mismatches(requested: dict[str, str], installed: dict[str, str | None]) -> list[str]:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    problems = []
    for name, spec in requested.items():
        key = _canon(name)
        have = installed.get(key)
        if have is None:
            problems.append(f"{name}: requested {spec}, not installed")
            continue
        text = spec.strip()
        if text and text[0].isdigit():
            text = "==" + text
        try:
            ok = SpecifierSet(text).contains(Version(have), prereleases=True) if text else True
        except (InvalidSpecifier, InvalidVersion):
            ok = have == spec
        if not ok:
            problems.append(f"{name}: requested {spec}, installed {have}")
    return problems


def current_env(pins: dict[str, str]) -> EvalEnv:
    """This interpreter, described like a pinned env (requested pins still compared)."""
    from . import probe as probe_module

    probe = probe_module.collect()  # same interpreter: no need for a subprocess
    installed = probe["packages"]
    return EvalEnv(
        kind="current",
        python=sys.executable,
        key=None,
        path=None,
        requested=dict(pins),
        installed=installed,
        mismatches=mismatches(pins, installed),
        probe=probe,
    )


def pinned_env(pins: dict[str, str], *, needs_4bit: bool, exclude_newer: str | None = None, say=None) -> EvalEnv:
    """The isolated environment for `pins`: reused when built, created with uv otherwise.

    Raises EnvError with the resolver's own words when the pins cannot be installed.
    """
    say = say or (lambda msg: None)
    reqs = requirements_for(pins, needs_4bit=needs_4bit)
    key = env_key(reqs, exclude_newer)
    root = hubkit_home() / "envs" / key
    python = root / "bin" / "python"
    t0 = time.perf_counter()
    created = False
    uv = uv_binary()
    install = [uv, "pip", "install", "--python", str(python)]
    for link in find_links():
        install += ["--find-links", link]
    if exclude_newer:
        install += ["--exclude-newer", exclude_newer]
    install += reqs
    if not (root / MARKER).is_file():
        say(f"creating pinned environment {key} with uv: {' '.join(reqs)}")
        if root.exists():
            shutil.rmtree(root)  # a half-built env from an interrupted run
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.with_name(f"{key}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        # Build under a temporary name, then rename: an interrupted build never looks complete,
        # and a failed one leaves nothing behind.
        try:
            _uv([uv, "venv", "--quiet", "--python", sys.executable, str(tmp)], "create the environment")
            _uv([*install[:4], str(tmp / "bin" / "python"), *install[5:]], f"install {' '.join(reqs)}")
            lock = _uv([uv, "pip", "freeze", "--python", str(tmp / "bin" / "python")], "freeze the environment")
            (tmp / "requirements.lock").write_text(lock)
            tmp.rename(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # a venv records its own path in its scripts; uv's are relocatable, so only python matters
        created = True
    probe = run_probe(str(python))
    installed = probe["packages"]
    env = EvalEnv(
        kind="pinned",
        python=str(python),
        key=key,
        path=str(root),
        requested=dict(pins),
        installed=installed,
        mismatches=mismatches(pins, installed),
        probe=probe,
        lock=(root / "requirements.lock").read_text() if (root / "requirements.lock").is_file() else None,
        created=created,
        setup_seconds=round(time.perf_counter() - t0, 2),
        install_command=install,
    )
    if created:
        (root / MARKER).write_text(json.dumps({"requirements": reqs, "exclude_newer": exclude_newer, "created": time.time()}))
    return env


def _uv(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        reason = proc.stderr.strip() or proc.stdout.strip()
        raise EnvError(
            f"uv could not {what}:\n{reason[-2000:]}",
            hint="Fix the pins in the eval setup (evals.NAME.pins), or use --env current.",
        )
    return proc.stdout
