"""`hubkit space`: build, serve and deploy the Gradio Space that compares a manifest's adapters
side by side.

The Space folder is self-contained: `app.py` and `engine.py` (from `space/`), a
`space_config.json` naming the base and every adapter (repo ids and pinned revisions, plus local
folders for `serve` only), the run records' results and a few multiple-choice examples, a
pinned `requirements.txt`, and a README whose front matter is the Space's metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import HubkitError
from .manifest import Manifest
from .templating import render_template

APP_FILES = ("app.py", "engine.py")
# What the Space installs beside the gradio its sdk_version brings (versions: the tested ones).
REQUIREMENTS = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "huggingface_hub", "pandas")
CONFIG_FILE = "space_config.json"


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
    records = RunStore(runs_dir).latest(setup=setup_name)
    setup = manifest.evals.get(setup_name or "")
    return summary_rows(manifest, records, list(setup.metrics) if setup and setup.metrics else None)


def space_config(manifest: Manifest, *, local: bool, runs_dir: Path | None = None, endpoint: str | None = None) -> dict:
    """What the app needs to know. With `local`, each model also names its local folder (for
    `hubkit space serve` on this machine; never deployed)."""
    from .hub.client import effective_endpoint
    from .publish import published_commits

    names = _adapters(manifest)
    arts = [manifest.artifacts[n] for n in names]
    first = arts[0]
    bases = {a.base_model for a in arts}
    if len(bases) > 1:
        raise SpaceError(f"space.adapters: the adapters have different bases ({', '.join(sorted(map(str, bases)))}); a Space compares adapters of one base")
    url = effective_endpoint(endpoint)
    pinned = published_commits(manifest, endpoint)
    setup_name = manifest.space.eval or next(iter(manifest.evals), None)
    setup = manifest.evals.get(setup_name or "")
    add_bos = bool(setup.model_args.get("add_bos_token")) if setup else False

    def model(name: str, repo_id: str | None, revision: str | None, path: Path | None, **extra) -> dict:
        entry = {"name": name, "repo_id": repo_id, "revision": revision, "url": f"{url}/{repo_id}" if repo_id else None, **extra}
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
    """Write the Space folder to `out` (default: space/ beside the manifest), atomically."""
    from huggingface_hub import SpaceCardData

    out = Path(out) if out else manifest.root / "space"
    config = space_config(manifest, local=local, runs_dir=runs_dir, endpoint=endpoint)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pkg = resources.files("hubkit.space")
    for name in APP_FILES:
        (tmp / name).write_bytes(pkg.joinpath(name).read_bytes())
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    reqs = [f"{d}=={v}" if (v := _version(d)) else d for d in REQUIREMENTS]
    (tmp / "requirements.txt").write_text("# versions hubkit tested this app with\n" + "\n".join(reqs) + "\n")
    models = [m["repo_id"] for m in [config["base"], *config["adapters"]] if m["repo_id"]]
    title = config["title"]
    card = SpaceCardData(
        title=title[:60],
        emoji=manifest.space.emoji,
        colorFrom="indigo",
        colorTo="green",
        sdk="gradio",
        sdk_version=_version("gradio"),
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        models=models,
        license=manifest.project.license if isinstance(manifest.project.license, str) else None,
        short_description=_short(f"{len(config['adapters'])} LoRA adapters of one base, side by side"),
        suggested_hardware=manifest.space.hardware,
        tags=["hubkit", "lora", "peft"],
    )
    readme = render_template("space/README.md.j2", front_matter=card.to_yaml(), config=config, manifest=manifest, hubkit_version=__version__, gradio_version=_version("gradio"))
    (tmp / "README.md").write_text(readme, encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return SpaceBuild(out, config, sorted(p.name for p in out.iterdir()))


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
        """Serve until Ctrl-C, `seconds` (None: no limit) or the app exiting; then stop it."""
        try:
            self.process.wait(timeout=seconds)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def serve_space(folder: str | Path, *, port: int | None = None, timeout: float = 180, env: dict | None = None) -> Served:
    """Start the Space's app.py on 127.0.0.1 in a child process (as a Space runs it) and wait
    until it answers. Offline: Gradio's analytics and huggingface_hub's network are off unless
    the config needs a Hub (then HF_ENDPOINT decides where)."""
    import urllib.request

    folder = Path(folder)
    if not (folder / "app.py").is_file():
        raise SpaceError(f"{folder}: no app.py", hint="Build the folder first: `hubkit space build`.")
    port = port or free_port()
    child = dict(os.environ)
    child.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    child.update(env or {})
    log = folder / "serve.log"
    with open(log, "wb") as fh:  # the child keeps its own copy of the handle
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=child, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
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
    proc.kill()
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
    files = [LocalFile(p.name, p) for p in sorted(out.iterdir()) if p.is_file()]
    target = Target("space", repo_id, files, repo_type="space", space_sdk="gradio")
    return push(
        [target], cache_path=manifest.root / ".hubkit" / "hash-cache.json", endpoint=endpoint, token=token, dry_run=dry_run,
        private=manifest.space.private if private is None else private, message="hubkit space deploy", say=say,
    )
