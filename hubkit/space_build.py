"""`hubkit space`: build, serve and deploy the Gradio Space that compares a manifest's adapters
side by side.

The Space folder is self-contained: `app.py` and `engine.py` (from `space/`), a
`space_config.json` naming the base and every adapter (repo ids and pinned revisions, plus local
folders for `serve` only), the run records' results and a few multiple-choice examples, a
`requirements.txt` the Hub can install, a README whose front matter is the Space's metadata, and
hubkit's marker file (the folder is hubkit's to replace on the next build).

Nothing in the folder depends on where it will be served from: no endpoint, port or time, so two
builds of the same manifest are the same bytes and re-deploying an unchanged Space commits nothing.
The app resolves each repo id against the Hub it runs with (HF_ENDPOINT) through huggingface_hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import HubkitError
from .manifest import Manifest
from .templating import render_template

APP_FILES = ("app.py", "engine.py")
CONFIG_FILE = "space_config.json"
# Marks a folder as hubkit's own Space build: only such a folder (or an empty one) is replaced.
MARKER = ".hubkit-space.json"
MARKER_DATA = {"built_by": "hubkit space build", "note": "hubkit replaces this whole folder on the next build; keep your own files elsewhere"}
# What a Space build without the marker (hubkit before the marker existed) holds, with what
# serving it adds: such a folder is still recognised as hubkit's.
_LEGACY_ENTRIES = {*APP_FILES, CONFIG_FILE, "requirements.txt", "README.md", "serve.log", "__pycache__", ".gradio"}

# What the Space installs on top of its Gradio SDK image, each with the oldest release the app
# works with (the fallback when this machine's version is not a public release). gradio is not
# here: on Spaces it comes from the README's sdk_version, and a gradio line in requirements.txt
# would be installed first and then replaced by (or conflict with) the SDK's own.
SPACE_PACKAGES = {
    "torch": "2.4",
    "transformers": "4.45",
    "peft": "0.15",  # adapter_names= mixed batches
    "accelerate": "1.0",
    "safetensors": "0.4",
    "tokenizers": "0.20",
    "huggingface_hub": "0.34",
    "pandas": "2.2",
}
# The Gradio the app is written for, when this machine has no public gradio release to name.
GRADIO_FALLBACK = "6.31.0"


class SpaceError(HubkitError):
    """The Space cannot be built, served or deployed."""


@dataclass
class SpaceBuild:
    out: Path
    config: dict
    files: list[str]


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def public_version(dist: str) -> str | None:
    """This machine's version of `dist` if a public index can serve it, else None (see
    `_unpublished`)."""
    return None if _unpublished(dist) else _version(dist)


def _unpublished(dist: str) -> str | None:
    """Why this machine's `dist` may not be on a public index, or None when it is a release an
    index served: missing, a local label (`2.13.0+cpu`: PyTorch's own wheel index, not PyPI), a
    dev release, or installed from a path, URL or VCS checkout (PEP 610's direct_url.json)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.version import InvalidVersion, Version

    try:
        dist_info = distribution(dist)
        v = Version(dist_info.version)
    except PackageNotFoundError:
        return "not installed here"
    except InvalidVersion:
        return "this machine's version is not a valid version"
    if v.local:
        return f"this machine's {v} is a local build"
    if v.is_devrelease:
        return f"this machine's {v} is a development version"
    if dist_info.read_text("direct_url.json"):
        return f"this machine's {v} was installed from a path or URL"
    return None


def space_requirements() -> str:
    """The Space's requirements.txt: only lines a Hub build can install (no local version labels,
    paths, URLs or index options), pinned to the versions tested here where those are public."""
    lines = [
        "# Installed by the Space on top of its Gradio SDK image; gradio itself is the README's",
        "# sdk_version. Pins are the versions hubkit tested this app with.",
    ]
    for name, floor in SPACE_PACKAGES.items():
        tested = public_version(name)
        if name == "torch":
            here = _release(_version(name))
            lines.append(
                "# torch is not pinned: the Space installs the build that fits its hardware (CUDA or CPU)"
                " from PyPI, or keeps its image's own" + (f"; tested with {here}" if here else "") + "."
            )
            lines.append(f"torch>={floor}")
        elif tested:
            lines.append(f"{name}=={tested}")
        else:
            lines.append(f"# {name}: {_unpublished(name)}; any release from {floor} on works")
            lines.append(f"{name}>={floor}")
    return "\n".join(lines) + "\n"


def _release(version: str | None) -> str | None:
    """`2.13.0+cpu` -> `2.13.0` (a version as an index would name it), for comments only."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).public if version else None
    except InvalidVersion:
        return None


def gradio_sdk_version() -> str:
    """The README's sdk_version: this machine's gradio if it is a public release, else the
    version the app is written for."""
    return public_version("gradio") or GRADIO_FALLBACK


def _adapters(manifest: Manifest) -> list[str]:
    names = manifest.space.adapters or [n for n, a in manifest.artifacts.items() if a.kind == "adapter"]
    if not names:
        raise SpaceError("the manifest has no adapter artifacts to compare", hint="Add adapters under `artifacts:` (kind: adapter).")
    return names


def _mc_examples(manifest: Manifest, setup_name: str | None, limit: int = 6) -> list[dict]:
    """A few ARC-style rows (question, choices, answer) from the eval setup's local data."""
    setup = manifest.evals.get(setup_name or "")
    if setup is None:
        return []
    out = []
    for override in setup.data.values():
        if override.format != "json":
            continue
        for split in ("test", "validation", "train"):
            path = manifest.resolve(override.files.get(split)) if override.files.get(split) else None
            if path is None or not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    choices = list(row["choices"]["text"])
                    answer = list(row["choices"]["label"]).index(row["answerKey"]) if "answerKey" in row else None
                except (ValueError, KeyError, TypeError):
                    continue
                out.append({"question": row["question"], "choices": choices, "answer": answer})
                if len(out) >= limit:
                    return out
            break
    return out


def _results(manifest: Manifest, runs_dir: Path, setup_name: str | None) -> list[dict]:
    from .eval.records import RunStore
    from .eval.summary import summary_rows

    if not runs_dir.is_dir():
        return []
    records = RunStore(runs_dir).latest(setup=setup_name)  # a damaged record (a results file gone) raises RecordError naming it
    setup = manifest.evals.get(setup_name or "")
    return summary_rows(manifest, records, list(setup.metrics) if setup and setup.metrics else None)


def space_config(manifest: Manifest, *, local: bool, runs_dir: Path | None = None, endpoint: str | None = None) -> dict:
    """What the app needs to know. With `local`, each model also names its local folder (for
    `hubkit space serve` on this machine; never deployed). `endpoint` only selects which Hub's
    published commits pin the adapters; it is not written anywhere."""
    from .publish import published_commits

    names = _adapters(manifest)
    arts = [manifest.artifacts[n] for n in names]
    first = arts[0]
    bases = {a.base_model for a in arts}
    if len(bases) > 1:
        raise SpaceError(f"space.adapters: the adapters have different bases ({', '.join(sorted(map(str, bases)))}); a Space compares adapters of one base")
    pinned = published_commits(manifest, endpoint)
    setup_name = manifest.space.eval or next(iter(manifest.evals), None)
    setup = manifest.evals.get(setup_name or "")
    add_bos = bool(setup.model_args.get("add_bos_token")) if setup else False

    def model(name: str, repo_id: str | None, revision: str | None, path: Path | None, **extra) -> dict:
        entry = {"name": name, "repo_id": repo_id, "revision": revision, **extra}
        if local and path is not None:
            entry["path"] = str(path.resolve())
        return entry

    base_path = manifest.resolve(first.base_model_path)
    config = {
        "format": 1,
        "title": manifest.space.title or manifest.project.name,
        "summary": manifest.project.summary,
        "base": model("base", first.base_model, first.base_model_revision, base_path),
        "adapters": [
            model(n, a.repo_id, pinned.get(a.repo_id) if a.repo_id else None, manifest.resolve(a.path), summary=a.summary or "")
            for n, a in zip(names, arts)
        ],
        "dtype": manifest.space.dtype,
        "add_bos_token": add_bos,
        "limits": {"max_new_tokens": manifest.space.max_new_tokens, "max_prompt_tokens": manifest.space.max_prompt_tokens, "max_choices": 10},
        "prompts": manifest.space.prompts,
        "mc": {"template": "Question: {question}\nAnswer:", "examples": _mc_examples(manifest, setup_name)},
        "results": _results(manifest, runs_dir or manifest.root / "runs", setup_name),
        "eval_setup": setup_name,
        "built_with": {"hubkit": __version__},
    }
    return config


def build_space(manifest: Manifest, out: str | Path | None = None, *, local: bool = False, runs_dir: Path | None = None, endpoint: str | None = None) -> SpaceBuild:
    """Write the Space folder to `out` (default: space/ beside the manifest), atomically, and
    return what was written.

    An existing `out` is replaced only when it is empty or a Space folder hubkit built (it holds
    the marker file); raises SpaceError, touching nothing, when `out` is anything else, or is
    (or holds) the manifest's folder or an input of the build."""
    from huggingface_hub import SpaceCardData

    runs_dir = runs_dir or manifest.root / "runs"
    out = Path(out) if out else manifest.root / "space"
    config = space_config(manifest, local=local, runs_dir=runs_dir, endpoint=endpoint)
    out = _checked_out(out, manifest, [runs_dir, *_model_paths(manifest)])
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # a partial build of ours that a crash left behind
    tmp.mkdir(parents=True)
    try:
        pkg = resources.files("hubkit.space")
        for name in APP_FILES:
            (tmp / name).write_bytes(pkg.joinpath(name).read_bytes())
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "requirements.txt").write_text(space_requirements(), encoding="utf-8")
        models = [m["repo_id"] for m in [config["base"], *config["adapters"]] if m["repo_id"]]
        sdk_version = gradio_sdk_version()
        card = SpaceCardData(
            title=config["title"][:60],
            emoji=manifest.space.emoji,
            colorFrom="indigo",
            colorTo="green",
            sdk="gradio",
            sdk_version=sdk_version,
            python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
            app_file="app.py",
            models=models,
            license=manifest.project.license if isinstance(manifest.project.license, str) else None,
            short_description=_short(f"{len(config['adapters'])} LoRA adapters of one base, side by side"),
            suggested_hardware=manifest.space.hardware,
            tags=["hubkit", "lora", "peft"],
        )
        readme = render_template("space/README.md.j2", front_matter=card.to_yaml(), config=config, manifest=manifest, hubkit_version=__version__, gradio_version=sdk_version)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps(MARKER_DATA, indent=2) + "\n", encoding="utf-8")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SpaceBuild(out, config, sorted(p.name for p in out.iterdir() if p.name != MARKER))


def _model_paths(manifest: Manifest) -> list[Path]:
    """Local folders the build reads models from (they must never be inside the output)."""
    paths = []
    for art in manifest.artifacts.values():
        for attr in ("path", "base_model_path"):
            value = getattr(art, attr, None)
            if value:
                paths.append(manifest.resolve(value))
    return paths


def is_space_folder(folder: Path) -> bool:
    """Whether `folder` is a Space folder hubkit built: it holds the marker, or (a build from
    before the marker) only the files a build and `serve` write, with hubkit's config."""
    if (folder / MARKER).is_file():
        return True
    try:
        names = {p.name for p in folder.iterdir()}
        built_with = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("built_with", {})
    except (OSError, ValueError, AttributeError):
        return False
    return names <= _LEGACY_ENTRIES and isinstance(built_with, dict) and "hubkit" in built_with


def _checked_out(out: Path, manifest: Manifest, inputs: list[Path]) -> Path:
    """`out` as an absolute path, if a build may write it; else SpaceError (one line + next step)."""
    hint = f"Give --out a new or empty folder (the default is {manifest.root / 'space'})."
    if out.is_symlink():
        raise SpaceError(f"--out {out}: a symbolic link; not replacing what it points to", hint=hint)
    resolved = out.resolve()
    for what, path in [("the manifest's folder", manifest.root), *(("an input of the build", p) for p in inputs)]:
        path = path.resolve()
        if path == resolved or resolved in path.parents:
            where = "is" if path == resolved else "holds"
            raise SpaceError(f"--out {out}: {where} {what} ({path}); a build replaces its output folder, so it must be a folder of its own", hint=hint)
    if resolved.exists():
        if not resolved.is_dir():
            raise SpaceError(f"--out {out}: not a folder", hint=hint)
        if any(resolved.iterdir()) and not is_space_folder(resolved):
            raise SpaceError(
                f"--out {out}: not empty and not a Space folder hubkit built (no {MARKER}); refusing to replace it",
                hint=hint + f" To reuse {out}, empty or remove it yourself first.",
            )
    return resolved


def _replace(tmp: Path, out: Path) -> None:
    """Put the finished build `tmp` at `out`; the old folder (checked to be ours) goes after."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


# -- serve ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    log: Path

    def wait(self, seconds: float | None = None) -> None:
        """Serve until Ctrl-C, SIGTERM, `seconds` (None: no limit) or the app exiting; then stop it."""
        try:
            with _stop_signals():
                self.process.wait(timeout=seconds)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the app and whatever it started (its own process group), SIGKILL after 10 s."""
        _stop_group(self.process)


def _stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    # The group is signalled only while its leader is unreaped (running, or a zombie whose id
    # the kernel still holds), so the id cannot belong to anyone else's processes yet.
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        try:
            os.killpg(proc.pid, sig)
        except (AttributeError, ProcessLookupError, PermissionError):  # no process groups (Windows), or it left ours
            proc.send_signal(sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def _stop_signals():
    """Within: SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so whatever stops the
    app runs (Python's default for SIGTERM ends the process and leaves the app serving). Signal
    handlers belong to the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Run in the app's process before app.py: on Linux, ask the kernel to SIGTERM it when its parent
# dies (even by SIGKILL), and give up if the parent is already gone; then become `python app.py`.
_CHILD_BOOT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "os.getppid() == int(sys.argv[1]) or sys.exit(0)\n"
    "os.execv(sys.executable, [sys.executable, 'app.py'])\n"
)


def serve_space(folder: str | Path, *, port: int | None = None, timeout: float = 180, env: dict | None = None) -> Served:
    """Start the Space's app.py on 127.0.0.1 in a child process (as a Space runs it) and wait
    until it answers. Offline: Gradio's analytics and huggingface_hub's network are off unless
    the config needs a Hub (then HF_ENDPOINT decides where).

    The app runs in its own process group, which `Served.stop` ends as a whole. Ctrl-C or SIGTERM
    while it starts (or during `Served.wait`) stops it; on Linux it also ends if this process dies
    (when called from the main thread: the kernel ties it to the thread that started it)."""
    import urllib.request

    folder = Path(folder)
    if not (folder / "app.py").is_file():
        raise SpaceError(f"{folder}: no app.py", hint="Build the folder first: `hubkit space build`.")
    if port:  # Gradio would quietly take the next free port, and we would wait on this one
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                raise SpaceError(f"port {port} on 127.0.0.1 is in use", hint="Pick another with --port, or leave --port out for a free one.") from exc
    port = port or free_port()
    child = dict(os.environ)
    child.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    child.update(env or {})
    argv = [sys.executable, "app.py"]
    if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
        argv = [sys.executable, "-c", _CHILD_BOOT, str(os.getpid())]
    log = folder / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with _stop_signals():
        with open(log, "wb") as fh:  # the child keeps its own copy of the handle
            # A session of its own: a terminal's Ctrl-C reaches only us, and we stop the app.
            proc = subprocess.Popen(argv, cwd=folder, env=child, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace").splitlines()[-15:]
                    raise SpaceError(f"the Space exited with code {proc.returncode} while starting:\n" + "\n".join(tail), hint=f"Full log: {log}")
                try:
                    with urllib.request.urlopen(url + "/config", timeout=2) as r:
                        if r.status == 200:
                            return Served(url, proc, log)
                except OSError:
                    time.sleep(0.5)
        except BaseException:
            _stop_group(proc)
            raise
    _stop_group(proc)
    raise SpaceError(f"the Space did not answer on {url} within {timeout:.0f}s", hint=f"See {log}.")


# -- deploy ---------------------------------------------------------------------------------------


def deploy_space(manifest: Manifest, *, repo_id: str | None = None, endpoint: str | None = None, token: str | None = None, dry_run: bool = False, private: bool | None = None, runs_dir: Path | None = None, say=lambda m: None):
    """Build the Space without local paths and push it (one commit) to a Space repo."""
    from .publish import LocalFile, Target, push

    repo_id = repo_id or manifest.space.repo_id
    if not repo_id:
        raise SpaceError("space.repo_id: not set", hint="Set space.repo_id: owner/name in hubkit.yaml, or pass --repo-id.")
    out = manifest.root / ".hubkit" / "space-deploy"
    build = build_space(manifest, out, local=False, runs_dir=runs_dir, endpoint=endpoint)
    missing = [m["name"] for m in [build.config["base"], *build.config["adapters"]] if not m["repo_id"]]
    if missing:
        raise SpaceError(
            f"the Space cannot load {', '.join(missing)} on the Hub: no repo id",
            hint="Set base_model (Hub id) and each adapter's repo_id, and publish the adapters first (`hubkit publish`).",
        )
    unpinned = [m["name"] for m in build.config["adapters"] if not m["revision"]]
    if unpinned:
        say(f"note: {', '.join(unpinned)} not published from here yet; the Space loads their main branch")
    files = [LocalFile(p.name, p) for p in sorted(out.iterdir()) if p.is_file() and p.name != MARKER]
    target = Target("space", repo_id, files, repo_type="space", space_sdk="gradio")
    return push(
        [target], cache_path=manifest.root / ".hubkit" / "hash-cache.json", endpoint=endpoint, token=token, dry_run=dry_run,
        private=manifest.space.private if private is None else private, message="hubkit space deploy", say=say,
    )
