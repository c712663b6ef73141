"""The catalogue of bad inputs, faults and attacks (issue #15), driven through the CLI as a new user
and a hostile one would. Every case asserts the exit code, the exact error line(s) and hint, that
no traceback and no token reached the output, and that the project's files were neither changed
nor deleted (hashed before and after) unless the case says which may change.

Most cases are rows of `CASES`, run by `test_case` through `hubkit.cli.main` in this process.
Those that need real processes (two publishes at once, a hub that dies, a closed stdout)
are the `test_*` functions after it; together they are the catalogue.

The project is the demo world with one real eval run (lm-eval, 4 documents) and its rendered cards,
made once per module; each case gets its own copy and runs in a scratch folder outside it. Disk faults are real where the machine allows (a tiny and a read-only
tmpfs as root, see `catalogue_faults`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from catalogue_faults import full_disk, read_only
from hubkit.cli import main
from hubkit.space_build import free_port

TOKEN = "hf_" + "CatalogueSecret0123456789abcdefXYZ"  # HF_TOKEN for every case: must never be printed
RUN_CMD = [sys.executable, "-m", "hubkit"]
REAL = Path(__file__).parent / "data" / "real" / "lm_eval"
RESULTS_04 = REAL / "lm_eval-0.4.7-gsm8k-5shot-strict-flexible.json"


# -- the project, made once ----------------------------------------------------------------------


@dataclass
class Evaluated:
    live: Path  # where every case's project lives, so eval's cache (keyed on data paths) hits
    pristine: Path  # the same files, never touched: copied over `live` before each case


@pytest.fixture(scope="module")
def evaluated(demo_world, tmp_path_factory):
    """The demo world plus one real eval record (lora-full, 4 documents)."""
    from hubkit.eval import run_eval
    from hubkit.manifest import load_manifest

    base = tmp_path_factory.mktemp("catalogue")
    live = base / "world"
    shutil.copytree(demo_world.paths.root, live, symlinks=True)
    outcomes = run_eval(load_manifest(live / "hubkit.yaml"), artifact="lora-full", include_base=False, limit=4)
    assert [o.record.ok for o in outcomes] == [True]
    # cards rendered as a user would before publishing (publish renders missing ones itself)
    assert main(["card", "-m", str(live / "hubkit.yaml")]) == 0
    shutil.copytree(live, base / "pristine", symlinks=True)
    return Evaluated(live, base / "pristine")


def force_rmtree(path: Path) -> None:
    """Remove a tree that holds read-only run records (a non-root user cannot otherwise)."""
    def retry(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o755)
        func(p)
    shutil.rmtree(path, onexc=retry) if sys.version_info >= (3, 12) else shutil.rmtree(path, onerror=retry)


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def no_retry_wait(monkeypatch):
    """huggingface_hub retries a dead connection with 1-8 s waits: the cases need the outcome."""
    import types

    from huggingface_hub.utils import _http

    clock = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")} | {"sleep": lambda s: None})
    monkeypatch.setattr(_http, "time", clock)


def online(monkeypatch):
    """HF_HUB_OFFLINE unset, as on a user's machine."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


# -- what a case sees ----------------------------------------------------------------------------


@dataclass
class Ctx:
    proj: Path  # a fresh copy of the evaluated demo world
    tmp: Path  # scratch space outside the project
    stack: ExitStack
    monkeypatch: pytest.MonkeyPatch
    notes: dict = field(default_factory=dict)

    @property
    def m(self) -> Path:
        return self.proj / "hubkit.yaml"

    @property
    def adapter(self) -> Path:
        return self.proj / "adapters" / "lora-full"

    @property
    def base(self) -> Path:
        return self.proj / "base"

    def manifest(self) -> dict:
        return yaml.safe_load(self.m.read_text())

    def write_manifest(self, data: dict, name: str = "hubkit.yaml") -> Path:
        path = self.proj / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def edit(self, fn: Callable[[dict], None]) -> None:
        data = self.manifest()
        fn(data)
        self.write_manifest(data)

    def record(self) -> Path:
        (rec,) = [p for p in (self.proj / "runs").iterdir() if not p.name.startswith(".")]
        return rec

    def results_file(self) -> Path:
        (found,) = self.record().rglob("results_*.json")
        return found

    def writable(self, path: Path) -> Path:
        for p in [path, *path.parents]:
            if p == self.proj:
                break
            if p.exists():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
        return path

    def hub(self, *, token: str | None = None, faults: dict | None = None) -> str:
        from hubkit.hub.server import LocalHub

        hub = LocalHub(self.tmp / "hub", token=token, faults=faults)
        self.stack.enter_context(hub)
        self.notes["hub"] = hub
        return hub.url

    def full(self, name: str = "full", size: str = "64k") -> Path:
        return self.stack.enter_context(full_disk(self.tmp / name, size=size)).path

    def readonly(self, name: str = "ro") -> Path:
        return self.stack.enter_context(read_only(self.tmp / name)).path

    def listening(self) -> int:
        """A port with a listener that never answers (a port in use; a silent server)."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        self.stack.callback(s.close)
        return s.getsockname()[1]


@dataclass
class Case:
    id: str
    argv: Callable[[Ctx], list]
    code: int
    errors: list[str]  # regexes, each must match one `error:` line in full, in order
    hint: str | None = None  # regex searched in the `hint:` line; None: no hint expected
    setup: Callable[[Ctx], None] | None = None
    check: Callable[[Ctx, str, str], None] | None = None  # (ctx, stdout, stderr): more assertions
    may_change: tuple[str, ...] = ()  # paths under the project the command may write
    stdout: str | None = None  # regex for stdout; default: empty when the command fails
    xfail: str | None = None  # a known bug in a file this branch may not change (strict)


def snapshot(root: Path, ignore: tuple[str, ...]) -> dict[str, str]:
    """relative path -> sha256 (or link target) of everything under `root` but `ignore`d prefixes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if any(rel == i or rel.startswith(i.rstrip("/") + "/") for i in ignore):
                continue
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[rel] = "dir"
    return out


def mentions_token(root: Path) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and TOKEN.encode() in p.read_bytes():
            hits.append(str(p))
    return hits


def split(err: str) -> tuple[list[str], list[str]]:
    errors = [line[len("error: "):] for line in err.splitlines() if line.startswith("error: ")]
    hints = [line[len("hint: "):] for line in err.splitlines() if line.startswith("hint: ")]
    return errors, hints


# -- the helpers cases use ------------------------------------------------------------------------


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def tiny_adapter(root: Path, **config) -> Path:
    """A real (tiny) LoRA adapter folder: config and safetensors, no torch needed."""
    import numpy as np
    from safetensors.numpy import save_file

    root.mkdir(parents=True, exist_ok=True)
    cfg = {"peft_type": "LORA", "base_model_name_or_path": "org/base", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"} | config
    (root / "adapter_config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(0)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{prefix}.lora_A.weight": rng.standard_normal((4, 8)).astype(np.float32), f"{prefix}.lora_B.weight": rng.standard_normal((8, 4)).astype(np.float32)}, str(root / "adapter_model.safetensors"))
    return root


def add_safetensors_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Rewrite a safetensors file with the same tensors and `metadata` added to its header."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), "np") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata() or {}
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    save_file(tensors, str(path), metadata=meta | metadata)


def nan_results(ctx: Ctx) -> Path:
    """lm-eval's gsm8k results with its strict-match score NaN."""
    data = json.loads(RESULTS_04.read_text())
    row = data["results"]["gsm8k"]
    row[next(k for k in row if k.startswith("exact_match,strict"))] = float("nan")
    path = ctx.tmp / "nan_results.json"
    path.write_text(json.dumps(data))  # json writes NaN, as lm-eval's results files do
    return path


def no_nan_on_card(readme: Path) -> None:
    from huggingface_hub import ModelCard

    text = readme.read_text()
    assert "unavailable: nan in the results file" in text, text
    values = [m["value"] for e in ModelCard(text).data.to_dict().get("model-index", []) for r in e["results"] for m in r["metrics"]]
    assert values and all(isinstance(v, (int, float)) and v == v for v in values), values


def copy_adapter(ctx: Ctx, name: str = "bad-adapter") -> Path:
    dest = ctx.tmp / name
    shutil.copytree(ctx.adapter, dest)
    return dest


def set_adapter_config(path: Path, **changes) -> None:
    cfg = json.loads((path / "adapter_config.json").read_text())
    cfg.update(changes)
    (path / "adapter_config.json").write_text(json.dumps(cfg))


def set_adapter_config_file(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    path.write_bytes(data[:keep])


def unseal_edit(ctx: Ctx, path: Path, data: bytes | None) -> None:
    """Change (or with None, delete) a file of a sealed, read-only run record."""
    ctx.writable(path.parent)
    if data is None:
        path.unlink()
    else:
        path.chmod(0o644)
        path.write_bytes(data)


def template_dir(ctx: Ctx, text: str) -> Path:
    d = ctx.tmp / "templates"
    write(d / "card" / "_results.md.j2", text)
    return d


def artifact(name: str, **changes):
    def fn(data):
        data["artifacts"][name].update(changes)
    return fn


def hub_session_repo_files(url: str, repo: str) -> list[str]:
    from huggingface_hub import HfApi

    from hubkit.hub.client import hub_session

    with hub_session(url):
        try:
            return HfApi(endpoint=url, token=TOKEN).list_repo_files(repo)
        except Exception as exc:  # noqa: BLE001 - "no such repo" is the answer here
            if "404" in str(exc) or "not found" in str(exc).lower():
                return []
            raise


LORA_FULL_REPO = "demo-user/tiny-mistral-lora-full"
REC = r"\d{8}T\d{6}-demo-lora-full-[0-9a-f]{8}"  # the evaluated world's run id


def nothing_on_hub(ctx: Ctx, out: str, err: str) -> None:
    assert hub_session_repo_files(ctx.notes["hub"].url, LORA_FULL_REPO) == []


def no_partials(folder_of: Callable[[Ctx], Path]):
    def check(ctx: Ctx, out: str, err: str) -> None:
        folder = folder_of(ctx)
        left = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        assert left == [], f"left behind in {folder}: {left}"
    return check


# -- the table ------------------------------------------------------------------------------------

P = r"/\S+"  # some absolute path
MANIFEST_HINT = r"^Fix the fields above"

CASES: list[Case] = [
    # ---- the command line itself
    Case("usage: unknown command, with a suggestion", lambda c: ["inspek"], 2,
         [r"No such command 'inspek'\. Did you mean 'inspect'\?"], r"`hubkit --help` lists"),
    Case("usage: unknown option, with a suggestion", lambda c: ["publish", "-m", c.m, "--dryrun"], 2,
         [r"No such option '--dryrun'\. Did you mean '--dry-run'\?"], r"`hubkit publish --help`"),
    Case("usage: a token on the command line is refused and never echoed", lambda c: ["publish", "-m", c.m, "--token", TOKEN], 2,
         [r"No such option '--token'\..*"], r"`hubkit publish --help`"),
    Case("usage: a token passed as a value is redacted in the error", lambda c: ["eval", "-m", c.m, "--limit", TOKEN], 2,
         [r"Invalid value for '--limit': '\*\*\*' is not a valid float\."], r"`hubkit eval --help`"),
    Case("usage: --limit not a number", lambda c: ["eval", "-m", c.m, "--limit", "many"], 2,
         [r"Invalid value for '--limit': 'many' is not a valid float\."], r"--help"),
    Case("usage: a port out of range", lambda c: ["hub", "serve", "--port", "70000"], 2,
         [r"Invalid value for '--port': 70000 is not in the range 0<=x<=65535\."], r"`hubkit hub serve --help`"),
    Case("usage: a missing argument", lambda c: ["inspect"], 2, [r"Missing argument 'PATH'\."], r"`hubkit inspect --help`"),
    Case("usage: a dtype hubkit does not write", lambda c: ["merge", c.adapter, "--out", c.tmp / "m", "--dtype", "int4"], 2,
         [r"Invalid value for '--dtype': 'int4' is not one of 'float16', 'bfloat16', 'float32'\."], r"--help"),
    Case("usage: --template-dir that does not exist", lambda c: ["card", "-m", c.m, "--template-dir", c.tmp / "nope"], 2,
         [rf"Invalid value for '--template-dir': Directory '{P}/nope' does not exist\."], r"--help"),
    Case("usage: the manifest option given a folder", lambda c: ["validate", "-m", c.proj], 2,
         [rf"Invalid value for '-m' / '--manifest': File '{P}' is a directory\."], r"--help"),

    # ---- the manifest
    Case("manifest: missing", lambda c: ["validate", "-m", c.proj / "nope.yaml"], 2,
         [rf"{P}/nope\.yaml: no such manifest"], r"hubkit init"),
    Case("manifest: empty", lambda c: ["validate", "-m", c.proj / "empty.yaml"], 2,
         [rf"{P}/empty\.yaml: .*"], r".", setup=lambda c: write(c.proj / "empty.yaml", "")),
    Case("manifest: a list, not a mapping", lambda c: ["validate", "-m", c.proj / "list.yaml"], 2,
         [rf"{P}/list\.yaml: expected a mapping at the top level, got a list"], r".", setup=lambda c: write(c.proj / "list.yaml", "- a\n- b\n")),
    Case("manifest: not UTF-8 (latin-1)", lambda c: ["validate", "-m", c.proj / "latin.yaml"], 2,
         [rf"{P}/latin\.yaml: not UTF-8 text \(byte 0xe9 on line 2\)"], r"UTF-8", setup=lambda c: write(c.proj / "latin.yaml", b"project:\n  name: caf\xe9\n")),
    Case("manifest: YAML syntax error names the line", lambda c: ["validate", "-m", c.proj / "bad.yaml"], 2,
         [rf"{P}/bad\.yaml: not valid YAML \(line 4, column 10\): expected ',' or '\]', but got ':'"], r".", setup=lambda c: write(c.proj / "bad.yaml", "project:\n  name: x\n  tags: [a, b\nartifacts: {}\n")),
    Case("manifest: a tab in the indentation", lambda c: ["validate", "-m", c.proj / "tab.yaml"], 2,
         [rf"{P}/tab\.yaml: not valid YAML.*line 2.*"], r".", setup=lambda c: write(c.proj / "tab.yaml", "project:\n\tname: x\n")),
    Case("manifest: a misspelt key gets a suggestion", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: artifacts\.lora-full\.repoid: unknown key \(did you mean 'repo_id'\?\)"], MANIFEST_HINT,
         setup=lambda c: c.edit(artifact("lora-full", repoid="x/y"))),
    Case("manifest: a key given twice", lambda c: ["validate", "-m", c.proj / "dup.yaml"], 2,
         [rf"{P}/dup\.yaml: .*project\.name.*(twice|duplicate|more than once).*"], r".",
         setup=lambda c: write(c.proj / "dup.yaml", "project:\n  name: a\n  name: b\n  license: mit\n")),
    Case("manifest: a second artifacts: block (it silently replaced the first)", lambda c: ["validate", "-m", c.proj / "dup.yaml"], 2,
         [rf"{P}/dup\.yaml: artifacts: duplicate key on line 4 \(first on line 1; YAML would silently keep only the last\)"], r"Keep one of each",
         setup=lambda c: write(c.proj / "dup.yaml", "artifacts:\n  a: {kind: adapter, path: x}\nproject: {name: p}\nartifacts:\n  b: {kind: adapter, path: y}\n")),
    Case("manifest: a wrong type", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: evals\.demo\.num_fewshot: expected an integer, got \"five\".*"], MANIFEST_HINT,
         setup=lambda c: c.edit(lambda d: d["evals"]["demo"].update(num_fewshot="five"))),
    Case("manifest: repo id owner/..", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: artifacts\.lora-full\.repo_id: expected a Hub repo id like 'owner/name', got 'owner/\.\.'.*"], MANIFEST_HINT,
         setup=lambda c: c.edit(artifact("lora-full", repo_id="owner/.."))),
    Case("manifest: repo id with a newline", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: artifacts\.lora-full\.repo_id: expected a Hub repo id like 'owner/name', got 'owner/name\\nx'.*"], MANIFEST_HINT,
         setup=lambda c: c.edit(artifact("lora-full", repo_id="owner/name\nx"))),
    Case("manifest: repo id ../../evil", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: artifacts\.lora-full\.repo_id: expected a Hub repo id like 'owner/name', got '\.\./\.\./evil'.*"], MANIFEST_HINT,
         setup=lambda c: c.edit(artifact("lora-full", repo_id="../../evil"))),
    Case("manifest: an artifact path leading outside the project", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: artifacts\.lora-full\.path: .*outside.*"], r"paths are relative",
         setup=lambda c: c.edit(artifact("lora-full", path="../../elsewhere"))),
    Case("manifest: a planted symlink leading outside the project", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: artifacts\.lora-full\.path: .*outside.*"], r"paths are relative",
         setup=lambda c: (shutil.rmtree(c.adapter), c.adapter.symlink_to(c.tmp))),
    Case("manifest: validate warns about an artifact folder that does not exist", lambda c: ["validate", "-m", c.m], 0, [], None,
         setup=lambda c: c.edit(artifact("lora-half", path="adapters/lora-halv")),
         check=lambda c, out, err: re.search(r"warning: \S+: artifacts\.lora-half\.path: \S+/adapters/lora-halv does not exist", err) or pytest.fail(err),
         stdout=r".*: ok \(4 artifacts.*"),
    Case("manifest: a reference to an artifact that does not exist", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: .*artifacts\.lora-full\.merged: no artifact named 'lora-full-mergd'.*"], r".",
         setup=lambda c: c.edit(artifact("lora-full", merged="lora-full-mergd"))),
    Case("manifest: a claim whose subject is a typo gets 'did you mean'", lambda c: ["validate", "-m", c.m], 0, [], None,
         setup=lambda c: c.edit(lambda d: d.update(claims=[{"subject": "lora-ful", "task": "arc_challenge", "metric": "acc", "value": 0.5}])),
         check=lambda c, out, err: re.search(r"warning: \S+: claims\.0\.subject: 'lora-ful' is not an artifact \(did you mean 'lora-full'\?\)", err) or pytest.fail(err),
         stdout=r".*: ok .*1 claims\)"),
    Case("manifest: a symlink loop", lambda c: ["validate", "-m", c.proj / "loop.yaml"], 2,
         [rf"{P}/loop\.yaml: a symlink that leads to no file \(broken, or a loop\)"], r"ls -l",
         setup=lambda c: (c.proj / "loop.yaml").symlink_to("loop.yaml")),
    Case("manifest: a control character", lambda c: ["validate", "-m", c.proj / "ctl.yaml"], 2,
         [rf"{P}/ctl\.yaml: .*line 2.*"], r".", setup=lambda c: write(c.proj / "ctl.yaml", "project:\n  name: a\x07b\n")),
    Case("schema: -o into a read-only folder", lambda c: ["schema", "-o", c.readonly() / "schema.json"], 4,
         [rf"{P}/ro/schema\.json: (read-only file system|permission denied)"], r"writable|permissions"),
    Case("schema: -o into a folder that does not exist", lambda c: ["schema", "-o", c.tmp / "no" / "such" / "schema.json"], 2,
         [rf"{P}/no/such/schema\.json: no such file or directory"], r"Check the path"),

    # ---- init
    Case("init: --repo-id ../../evil is a usage error, not internal", lambda c: ["init", "--adapter", c.adapter, "--repo-id", "../../evil", "-o", c.tmp / "new.yaml"], 2,
         [r"--repo-id: expected a Hub repo id like 'owner/name', got '\.\./\.\./evil'.*"], r"--repo-id owner/name",
         check=lambda c, out, err: not (c.tmp / "new.yaml").exists() or pytest.fail("written")),
    Case("init: --repo-id owner/..", lambda c: ["init", "--adapter", c.adapter, "--repo-id", "owner/..", "-o", c.tmp / "new.yaml"], 2,
         [r"--repo-id: expected a Hub repo id like 'owner/name', got 'owner/\.\.'.*"], r"--repo-id owner/name"),
    Case("init: --adapter is an empty folder", lambda c: ["init", "--adapter", c.tmp / "empty", "-o", c.tmp / "new.yaml"], 2,
         [rf"{P}/empty/adapter_config\.json: missing \(PEFT adapter config\)"], None, setup=lambda c: (c.tmp / "empty").mkdir()),
    Case("init: --adapter does not exist", lambda c: ["init", "--adapter", c.tmp / "nope", "-o", c.tmp / "new.yaml"], 2,
         [rf"{P}/nope/adapter_config\.json: missing \(PEFT adapter config\)"], None),
    Case("init: the manifest exists already", lambda c: ["init", "--adapter", c.adapter, "-o", c.m], 1,
         [rf"{P}/hubkit\.yaml: already exists"], r"--force"),
    Case("init: -o into a read-only folder", lambda c: ["init", "--adapter", c.adapter, "-o", c.readonly() / "hubkit.yaml"], 4,
         [rf"{P}/ro/hubkit\.yaml(\.tmp)?: (read-only file system|permission denied)"], r"writable|permissions"),

    # ---- inspect: folders that are not what they claim
    Case("inspect: a path that does not exist", lambda c: ["inspect", c.tmp / "nope"], 2, [rf"{P}/nope: no such file or directory"], None),
    Case("inspect: an empty folder", lambda c: ["inspect", c.tmp], 2,
         [rf"{P}: neither a PEFT adapter \(no adapter_config\.json\) nor a checkpoint \(no config\.json\) nor GGUF files \(no \.gguf\)"], None),
    Case("inspect: a truncated adapter_model.safetensors", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_model\.safetensors: .*(truncated|ended|shorter|size).*"], r".",
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), truncate(c.notes["a"] / "adapter_model.safetensors", 5000))),
    Case("inspect: a safetensors header that is not JSON", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_model\.safetensors: corrupt safetensors header \(not JSON\)"], None,
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), write(c.notes["a"] / "adapter_model.safetensors", struct.pack("<Q", 12) + b"{not json!!}" + b"\0" * 64))),
    Case("inspect: a safetensors file of zero bytes", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_model\.safetensors: not a safetensors file \(only 0 bytes\)"], None,
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), write(c.notes["a"] / "adapter_model.safetensors", b""))),
    Case("inspect: a truncated adapter_config.json", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_config\.json: not valid JSON \(PEFT adapter config\): Unterminated string.*"], None,
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), truncate(c.notes["a"] / "adapter_config.json", 40))),
    Case("inspect: adapter_config.json not UTF-8", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_config\.json: not valid JSON \(PEFT adapter config\): 'utf-8' codec can't decode byte 0xe9.*"], None,
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), write(c.notes["a"] / "adapter_config.json", b'{"r": 4, "note": "caf\xe9"}'))),
    Case("inspect: adapter_config.json is a list", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_config\.json: expected a JSON object \(PEFT adapter config\)"], None,
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), write(c.notes["a"] / "adapter_config.json", "[1, 2]"))),
    Case("inspect: r = 0", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_config\.json: field 'r' is 0: a LoRA rank must be a positive integer"], r"adapter_config\.json intact",
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), set_adapter_config(c.notes["a"], r=0))),
    Case("inspect: a symlink loop", lambda c: ["inspect", c.tmp / "loop"], 2,
         [rf"{P}/loop: no such file or directory"], None, setup=lambda c: (c.tmp / "loop").symlink_to("loop")),
    Case("inspect: only pickled weights", lambda c: ["inspect", c.notes["a"]], 2,
         [rf"{P}/adapter_model\.bin: pickled weights only; hubkit reads safetensors"], r"safe_serialization=True",
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), (c.notes["a"] / "adapter_model.safetensors").rename(c.notes["a"] / "adapter_model.bin"))),
    Case("inspect: a .gguf file without GGUF magic", lambda c: ["inspect", c.tmp / "model.gguf"], 2,
         [rf"{P}/model\.gguf: not a GGUF file \(no GGUF magic at the start\)"], None, setup=lambda c: write(c.tmp / "model.gguf", b"NOTGGUF" + b"\0" * 64)),
    Case("inspect: a GGUF header claiming 2**62 tensors (no allocation, one line)", lambda c: ["inspect", c.tmp / "model.gguf"], 2,
         [rf"{P}/model\.gguf: corrupt GGUF header \(4611686018427387904 tensors, 1099511627776 metadata keys\)"], None,
         setup=lambda c: write(c.tmp / "model.gguf", b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**40) + b"\0" * 64)),
    Case("inspect: a GGUF metadata string longer than the file", lambda c: ["inspect", c.tmp / "model.gguf"], 2,
         [rf"{P}/model\.gguf: truncated or corrupt GGUF header \(reading metadata key 0 at byte 32, file has 64\)"], r"Re-download",
         setup=lambda c: write(c.tmp / "model.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**60) + b"k" * 32)),
    Case("inspect: a file, not a folder", lambda c: ["inspect", c.m], 2, [rf"{P}/hubkit\.yaml: is a file; pass the directory that holds it"], r"adapter directories"),

    # ---- merge
    Case("merge: r = 0 is refused (it merged and recorded r 0)", lambda c: ["merge", c.notes["a"], "--base", c.base, "--out", c.tmp / "merged"], 1,
         [rf"{P}/adapter_config\.json: r is 0: a LoRA rank must be a positive integer \(scale = lora_alpha / r\)"], r"adapter_config\.json intact",
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), set_adapter_config(c.notes["a"], r=0)),
         check=lambda c, out, err: not (c.tmp / "merged").exists() or pytest.fail("a merge was written")),
    Case("merge: the disk fills up", lambda c: ["merge", c.adapter, "--base", c.base, "--out", c.full(size="96k") / "merged"], 4,
         [rf"{P}/full/merged: (not enough space: the merge writes 0\.\d\d GB, 0\.00 GB free there|no space left on the device \(.*\); nothing was left behind)"], r"Free some space",
         check=no_partials(lambda c: c.tmp / "full")),
    Case("merge: the disk fills up mid-write (the kernel's own ENOSPC from /dev/full)", lambda c: ["merge", c.adapter, "--base", c.base, "--out", c.tmp / "merged"], 4,
         [rf"{P}/merged: no space left on the device \(the merge writes 0\.\d\d GB, [\d.]+ GB free\); nothing was left behind"], r"Free some space",
         setup=lambda c: c.monkeypatch.setattr("hubkit.merge._create", lambda path: open("/dev/full", "wb", buffering=0)),  # noqa: SIM115
         check=no_partials(lambda c: c.tmp)),
    Case("merge: --out on a read-only disk", lambda c: ["merge", c.adapter, "--base", c.base, "--out", c.readonly() / "merged"], 4,
         [rf"{P}/ro/merged: cannot write the merge there: (read-only file system|permission denied)"], r"writable|write to",
         check=no_partials(lambda c: c.tmp / "ro")),
    Case("merge: --out exists", lambda c: ["merge", c.adapter, "--base", c.base, "--out", c.proj / "data"], 1,
         [rf"{P}/data: exists and is not a finished hubkit merge \(no hubkit_merge\.json, or it holds folders\); hubkit replaces only its own output"], r"."),
    Case("merge: --force --out a parent of both inputs (it deleted them)", lambda c: ["merge", c.adapter, "--base", c.base, "--out", c.proj, "--force"], 1,
         [rf"{P}: contains the (base model|adapter) folder \S+; hubkit never writes over or deletes a merge input"], r"outside the base and adapter"),
    Case("merge: --out is the adapter itself", lambda c: ["merge", c.adapter, "--base", c.base, "--out", c.adapter, "--force"], 1,
         [rf"{P}/adapters/lora-full: is the adapter folder {P}/adapters/lora-full; hubkit never writes over or deletes a merge input"], r"."),
    Case("merge: a truncated base checkpoint", lambda c: ["merge", c.adapter, "--base", c.notes["b"], "--out", c.tmp / "merged"], 1,
         [rf"{P}/model\.safetensors: .*"], r".",
         setup=lambda c: (c.notes.update(b=c.tmp / "base"), shutil.copytree(c.base, c.tmp / "base"), truncate(c.tmp / "base" / "model.safetensors", 3000)),
         check=lambda c, out, err: not (c.tmp / "merged").exists() or pytest.fail("a merge was written")),
    Case("merge: --base is an adapter, not a model", lambda c: ["merge", c.adapter, "--base", c.proj / "adapters" / "lora-half", "--out", c.tmp / "merged"], 1,
         [rf"{P}/lora-half/config\.json: missing.*"], None),
    Case("merge: the adapter folder does not exist", lambda c: ["merge", c.tmp / "nope", "--base", c.base, "--out", c.tmp / "merged"], 1,
         [rf"adapter {P}/nope: no such folder"], r"local folder or a Hub repo id"),
    Case("merge: a Hub base offline and not cached", lambda c: ["merge", c.adapter, "--base", "org/not-cached", "--out", c.tmp / "merged"], 3,
         [r"base model org/not-cached: not in the local Hugging Face cache and https://huggingface\.co cannot be reached"], r"hf download"),
    Case("merge: --shard-size nonsense", lambda c: ["merge", c.adapter, "--base", c.base, "--out", c.tmp / "merged", "--shard-size", "lots"], 1,
         [r"shard size 'lots': expected a size like 5GB or 500MB"], None),
    Case("merge: only pickled adapter weights", lambda c: ["merge", c.notes["a"], "--base", c.base, "--out", c.tmp / "merged"], 1,
         [rf"{P}: only a pickled adapter_model\.bin; hubkit does not unpickle weights"], r"safe_serialization",
         setup=lambda c: (c.notes.update(a=copy_adapter(c)), (c.notes["a"] / "adapter_model.safetensors").rename(c.notes["a"] / "adapter_model.bin"))),

    # ---- eval (the fast ways to fail: before any model runs)
    Case("eval: --limit -3", lambda c: ["eval", "-m", c.m, "--limit", "-3"], 1,
         [r"--limit -3\.0: expected a positive number of documents \(or a fraction below 1\)"], None),
    Case("eval: an unknown setup", lambda c: ["eval", "-m", c.m, "--setup", "dmeo"], 1, [r"no eval setup named 'dmeo'"], r"Known setups: demo"),
    Case("eval: the runs folder is on a read-only disk", lambda c: ["eval", "-m", c.m, "--artifact", "lora-full", "--no-base", "--limit", "4", "--runs-dir", c.readonly() / "runs"], 4,
         [rf"{P}/ro/runs: (read-only file system|permission denied)"], r"writable|permissions"),
    Case("eval: the disk fills up while the record is written", lambda c: ["eval", "-m", c.m, "--artifact", "lora-full", "--no-base", "--limit", "4", "--rerun", "--runs-dir", c.full(size="8k") / "runs"], 4,
         [rf"disk full while writing {P}/full/runs/\.partial-{REC}-\d+/\S+"], r"Free some space"),
    Case("eval: a killed eval's leftover record is swept", lambda c: ["eval", "-m", c.m, "--artifact", "lora-full", "--no-base", "--limit", "4"], 0, [], None,
         setup=lambda c: (write(c.proj / "runs" / ".partial-20260101T000000-demo-lora-full-0badc0de-999999" / "attempts" / "x.json", "{}"),
                          (c.proj / "runs" / ".partial-20260101T000000-demo-lora-full-0badc0de-999999" / "attempts" / "x.json").chmod(0o444)),
         check=lambda c, out, err: (re.search(r"removed \.partial-20260101T000000-demo-lora-full-0badc0de-999999: a run record left unfinished by an eval that was killed", err) or pytest.fail(err),
                                    not (c.proj / "runs" / ".partial-20260101T000000-demo-lora-full-0badc0de-999999").exists() or pytest.fail("not swept")),
         stdout=r"(?s).*lora-full.*arc_challenge.*", may_change=("runs/.partial-20260101T000000-demo-lora-full-0badc0de-999999",)),

    # ---- runs
    Case("runs compare: an unknown run", lambda c: ["runs", "-m", c.m, "compare", "nope", "nope2"], 1, [rf"no run record 'nope' in {P}/runs"], r"`hubkit runs` lists"),
    Case("runs compare: an ambiguous prefix", lambda c: ["runs", "-m", c.m, "compare", "20", "20"], 1, [rf"'20' matches 2 runs in {P}/runs"], r"Give more of the run id",
         setup=lambda c: main(["runs", "-m", str(c.m), "import", str(RESULTS_04), "--subject", "lora-half", "--setup", "gsm8k"]), may_change=("runs",)),
    Case("runs import: a truncated results file", lambda c: ["runs", "-m", c.m, "import", c.tmp / "results.json", "--subject", "lora-full", "--setup", "x"], 1,
         [rf"{P}/results\.json: not JSON.*"], None, setup=lambda c: write(c.tmp / "results.json", RESULTS_04.read_bytes()[:500])),
    Case("runs import: a JSON file that is not lm-eval's", lambda c: ["runs", "-m", c.m, "import", c.tmp / "results.json", "--subject", "lora-full", "--setup", "x"], 1,
         [rf"{P}/results\.json: .*"], r"results_\*\.json", setup=lambda c: write(c.tmp / "results.json", '{"hello": 1}')),
    Case("runs import: a file that does not exist", lambda c: ["runs", "-m", c.m, "import", c.tmp / "nope.json", "--subject", "lora-full", "--setup", "x"], 1,
         [rf"{P}/nope\.json: cannot read it.*"], None),
    Case("runs import: a results file that is not UTF-8", lambda c: ["runs", "-m", c.m, "import", c.tmp / "results.json", "--subject", "lora-full", "--setup", "x"], 1,
         [rf"{P}/results\.json: not JSON.*"], None, setup=lambda c: write(c.tmp / "results.json", b'{"results": "caf\xe9"}')),
    Case("runs: a record edited after it was sealed is named, not shown", lambda c: ["runs", "-m", c.m], 0, [], None,
         setup=lambda c: unseal_edit(c, c.record() / "record.json", c.record().joinpath("record.json").read_bytes().replace(b'"ok"', b'"OK"', 1)),
         check=lambda c, out, err: re.search(rf"warning: damaged record: run {REC}: {P}/record\.json was edited after the run \(its sha256 no longer matches the seal\)", err) or pytest.fail(err), may_change=("runs",)),
    Case("runs: --runs-dir is a file", lambda c: ["runs", "-m", c.m, "--runs-dir", c.m], 2,
         [rf"Invalid value for '--runs-dir': Directory '{P}/hubkit\.yaml' is a file\."], r"--help"),

    # ---- card
    Case("card: a results file deleted from a record (it rendered without its numbers, silently)", lambda c: ["card", "-m", c.m], 1,
         [rf"run {REC}: attempts/\S+/results_\S+\.json is missing from {P} \(its seal names it\); no card was written"], r"restore the file",
         setup=lambda c: unseal_edit(c, c.results_file(), None), may_change=("runs",)),
    Case("card --check: a results file deleted from a record", lambda c: ["card", "-m", c.m, "--check"], 1,
         [r"8 problem\(s\) in 4 card\(s\):", *[line for a in ("tiny-mistral", "lora-full", "lora-half", "lora-full-merged") for line in [
             rf"  {a}: run {REC}: attempts/\S+/results_\S+\.json is missing from {P}/runs/{REC} \(its seal names it\)",
             *([rf"  {a}: {P}/cards/{a}/README\.md is stale: the manifest, run records or templates changed since it was rendered \(run `hubkit card`\)",
                rf"  {a}: {P}/cards/{a}/README\.md cites run {REC}, which is not among the current records \(deleted, damaged, or superseded: run `hubkit card`\)"]
               if a in ("lora-full", "lora-full-merged") else [])]]],
         r"run `hubkit card`", setup=lambda c: (main(["card", "-m", str(c.m)]), unseal_edit(c, c.results_file(), None)), may_change=("runs", "cards")),
    Case("card: a NaN in a results file is 'unavailable', never a number or model-index entry", lambda c: ["card", "-m", c.m, "--artifact", "lora-half"], 0, [], None,
         setup=lambda c: main(["runs", "-m", str(c.m), "import", str(nan_results(c)), "--subject", "lora-half", "--setup", "gsm8k"]),
         check=lambda c, out, err: no_nan_on_card(c.proj / "cards" / "lora-half" / "README.md"), stdout=rf"{P}/cards/lora-half/README\.md", may_change=("runs", "cards")),
    Case("card: the disk fills up", lambda c: ["card", "-m", c.m, "--out", c.full(size="16k") / "cards"], 4,
         [rf"disk full while writing {P}/full/cards/\S+"], r"Free some space"),
    Case("card: --out on a read-only disk", lambda c: ["card", "-m", c.m, "--out", c.readonly() / "cards"], 4,
         [rf"{P}/ro/cards(/[\w-]+)?: (read-only file system|permission denied)"], r"writable|permissions"),
    Case("card: a template with a syntax error names file and line", lambda c: ["card", "-m", c.m, "--template-dir", template_dir(c, "ok\n{% if %}\n")], 2,
         [rf"{P}/templates/card/_results\.md\.j2:2: template error: .*"], r"Fix the template"),
    Case("card: a template using an undefined name", lambda c: ["card", "-m", c.m, "--template-dir", template_dir(c, "ok\n{{ no_such_thing.value }}\n")], 2,
         [rf"{P}/templates/card/_results\.md\.j2:2: template error: .*no_such_thing.*"], r"Fix the template"),
    Case("card: an unknown artifact", lambda c: ["card", "-m", c.m, "--artifact", "lora-ful"], 1, [r".*'lora-ful'.*"], r"lora-full"),

    # ---- publish (to a local hub in this process)
    Case("publish: a results file deleted from a record", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub()], 1,
         [rf"run {REC}: attempts/\S+/results_\S+\.json is missing from {P} \(its seal names it\); nothing was sent"], r"restore the file",
         setup=lambda c: unseal_edit(c, c.results_file(), None), check=nothing_on_hub, may_change=("runs",)),
    Case("publish: the hub is unreachable", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", f"http://127.0.0.1:{free_port()}"], 3,
         [r"cannot reach the Hub at http://127\.0\.0\.1:\d+: connection refused; nothing was sent"], r"--endpoint"),
    Case("publish: the hub never answers", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", f"http://127.0.0.1:{c.listening()}", "--dry-run"], 3,
         [r"cannot reach the Hub at http://127\.0\.0\.1:\d+: no answer in time \(ReadTimeout\); nothing was sent"], r"HF_HUB_ETAG_TIMEOUT",
         setup=lambda c: c.monkeypatch.setattr("huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT", 1)),
    Case("publish: a wrong token", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub(token="hf_" + "TheHubsOwnToken0123456789abcdef")], 3,
         [rf"{LORA_FULL_REPO}: .*401.*"], r"token|HF_TOKEN|login", check=lambda c, out, err: "TheHubsOwnToken" not in out + err or pytest.fail("hub token shown")),
    Case("publish: a file holding the token is refused before anything is sent", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub()], 1,
         [r"tokenizer_config\.json: contains what looks like a secret, Hugging Face token \(at byte \d+\); refusing to publish"], r"Remove it from the file",
         setup=lambda c: set_adapter_config_file(c.adapter / "tokenizer_config.json", note=f"my token is {TOKEN}"), check=nothing_on_hub, may_change=("adapters/lora-full/tokenizer_config.json",)),
    Case("publish: a .env file is refused", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub()], 1,
         [rf"{P}/adapters/lora-full/\.env: looks like a secret; refusing to publish it"], r"Move it out",
         setup=lambda c: write(c.adapter / ".env", "A=1\n"), check=nothing_on_hub),
    Case("publish: a symlink to a file outside the project", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub()], 1,
         [rf"{P}/adapters/lora-full/tokenizer\.json: a symlink to {P}/private\.json, outside the project; refusing to publish it"], r"remove the link",
         setup=lambda c: (write(c.tmp / "private.json", "{}\n"), (c.adapter / "tokenizer.json").unlink(), (c.adapter / "tokenizer.json").symlink_to(c.tmp / "private.json")), check=nothing_on_hub),
    Case("publish: pickled weights are refused", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub()], 1,
         [rf"{P}/adapters/lora-full/extra\.bin: pickled weights can run code when loaded; refusing to publish"], r"--allow-pickle",
         setup=lambda c: write(c.adapter / "extra.bin", b"\x80\x04K\x01."), check=nothing_on_hub),
    Case("publish: a token in safetensors metadata is refused", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub()], 1,
         [rf".*adapter_model\.safetensors.*secret.*"], r".", setup=lambda c: add_safetensors_metadata(c.adapter / "adapter_model.safetensors", {"note": f"pushed with {TOKEN}"}),
         check=nothing_on_hub, may_change=("adapters/lora-full/adapter_model.safetensors",)),
    Case("publish: a token at the end of a 6 MB tokenizer.json is refused", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub()], 1,
         [rf".*tokenizer\.json.*secret.*"], r".",
         setup=lambda c: write(c.adapter / "tokenizer.json", '{"pad": "' + "x" * 6_000_000 + f'", "note": "{TOKEN}"}}'),
         check=nothing_on_hub, may_change=("adapters/lora-full/tokenizer.json",)),
    Case("publish: an unknown artifact", lambda c: ["publish", "-m", c.m, "--artifact", "lora-ful", "--endpoint", c.hub()], 1,
         [r"no artifact named 'lora-ful'"], r"Known artifacts: .*lora-full"),
    Case("publish: an artifact without repo_id", lambda c: ["publish", "-m", c.m, "--artifact", "lora-half", "--endpoint", c.hub()], 1,
         [r"artifacts\.lora-half\.repo_id: not set"], r"Set repo_id",
         setup=lambda c: c.edit(lambda d: d["artifacts"]["lora-half"].pop("repo_id"))),
    Case("publish: an artifact whose folder is missing", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full-merged", "--endpoint", c.hub()], 2,
         [rf"{P}/hubkit\.yaml: artifacts\.lora-full-merged\.path: {P}/merged/lora-full does not exist"], r"paths are relative"),
    Case("publish: HF_HUB_OFFLINE with a remote endpoint", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", "https://hub.example.invalid"], 3,
         [r"HF_HUB_OFFLINE is set: cannot reach https://hub\.example\.invalid"], r"Unset HF_HUB_OFFLINE"),

    # ---- space
    Case("space build: a results file deleted from a record", lambda c: ["space", "build", "-m", c.m, "--out", c.tmp / "space"], 1,
         [rf"run {REC}: attempts/\S+/results_\S+\.json is missing from {P} \(its seal names it\)"], r"Records are immutable",
         setup=lambda c: unseal_edit(c, c.results_file(), None), may_change=("runs",)),
    Case("space build: --out is a folder of someone else's files", lambda c: ["space", "build", "-m", c.m, "--out", c.tmp / "mine"], 1,
         [rf"--out {P}/mine: not empty and not a Space folder hubkit built \(no \.hubkit-space\.json\); refusing to replace it"], r".", setup=lambda c: write(c.tmp / "mine" / "thesis.tex", "precious\n"),
         check=lambda c, out, err: (c.tmp / "mine" / "thesis.tex").read_text() == "precious\n" or pytest.fail("clobbered")),
    Case("space build: --out is the project itself", lambda c: ["space", "build", "-m", c.m, "--out", c.proj], 1, [rf"--out {P}: is the manifest's folder \({P}\); a build replaces its output folder, so it must be a folder of its own"], r"."),
    Case("space serve: --port in use", lambda c: ["space", "serve", "-m", c.m, "--port", c.listening(), "--out", c.tmp / "space"], 4,
         [r"port \d+ on 127\.0\.0\.1 is in use"], r"--port"),
    Case("space deploy: the hub is unreachable", lambda c: ["space", "deploy", "-m", c.m, "--endpoint", f"http://127.0.0.1:{free_port()}"], 3,
         [r"cannot reach the Hub at http://127\.0\.0\.1:\d+: connection refused; nothing was sent"], r"--endpoint", may_change=(".hubkit",)),
    Case("space deploy: no space.repo_id", lambda c: ["space", "deploy", "-m", c.m, "--endpoint", c.hub()], 1, [r"space\.repo_id: not set"], r"--repo-id",
         setup=lambda c: c.edit(lambda d: d["space"].pop("repo_id"))),

    # ---- hub serve
    Case("hub serve: --port in use", lambda c: ["hub", "serve", "--root", c.tmp / "hub", "--port", c.listening()], 4,
         [r"port \d+ on 127\.0\.0\.1 is in use: start the hub on another one with --port PORT"], None),
    Case("hub serve: --token (visible in the process list) is refused and not echoed", lambda c: ["hub", "serve", "--root", c.tmp / "hub", "--token", TOKEN], 2,
         [r"--token is no longer accepted: a token on the command line is visible to every user in the process list"], r"HUBKIT_HUB_TOKEN"),
    Case("merge: a Hub base while the hub is unreachable", lambda c: ["merge", c.adapter, "--base", "org/some-base", "--out", c.tmp / "merged", "--endpoint", f"http://127.0.0.1:{free_port()}"], 3,
         [r"base model org/some-base: not in the local Hugging Face cache and http://127\.0\.0\.1:\d+ cannot be reached"], r"hf download",
         setup=lambda c: (online(c.monkeypatch), no_retry_wait(c.monkeypatch))),
    Case("runs import: two imports in the same second are two records", lambda c: ["runs", "-m", c.m, "import", RESULTS_04, "--subject", "lora-half", "--setup", "gsm8k"], 0, [], None,
         setup=lambda c: (c.monkeypatch.setattr("hubkit.eval.imports.now", lambda: "2026-01-01T00:00:00+00:00"),
                          main(["runs", "-m", str(c.m), "import", str(RESULTS_04), "--subject", "lora-half", "--setup", "gsm8k"])),
         check=lambda c, out, err: sorted(p.name for p in (c.proj / "runs").glob("20260101T000000-*")) == [out.strip()[:-2], out.strip()] or pytest.fail(out),
         stdout=r"20260101T000000-gsm8k-lora-half-imported-[0-9a-f]{8}-2", may_change=("runs",)),
    Case("manifest: a data file outside the project", lambda c: ["validate", "-m", c.m], 2,
         [rf"{P}/hubkit\.yaml: evals\.demo\.data\.arc_challenge\.files\.test: .*outside.*"], r"paths are relative",
         setup=lambda c: c.edit(lambda d: d["evals"]["demo"]["data"]["arc_challenge"]["files"].update(test="../../../../etc/passwd"))),
    Case("publish: the hub fails with 503", lambda c: ["publish", "-m", c.m, "--artifact", "lora-full", "--endpoint", c.hub(faults={"status": {r"POST /api/models/.*/preupload/": [503] * 20}})], 3,
         [rf"{LORA_FULL_REPO}: .*\(HTTP 503\).*"], r"[Tt]ry again later", setup=lambda c: no_retry_wait(c.monkeypatch)),
    Case("card --check: a record edited after it was sealed", lambda c: ["card", "-m", c.m, "--check", "--artifact", "lora-full"], 1,
         [r"3 problem\(s\) in 1 card\(s\):", rf"  lora-full: run {REC}: {P}/record\.json was edited after the run \(its sha256 no longer matches the seal\)",
          rf"  lora-full: {P}/cards/lora-full/README\.md is stale: .*", rf"  lora-full: {P}/cards/lora-full/README\.md cites run {REC}, which is not among the current records .*"],
         r"run `hubkit card`", setup=lambda c: (main(["card", "-m", str(c.m)]), unseal_edit(c, c.record() / "record.json", c.record().joinpath("record.json").read_bytes().replace(b'"ok"', b'"OK"', 1))),
         may_change=("runs", "cards")),
    Case("hub serve: --root is a file", lambda c: ["hub", "serve", "--root", c.m, "--port", "0"], 2,
         [rf"Invalid value for '--root': Directory '{P}/hubkit\.yaml' is a file\."], r"--help"),
    Case("hub serve: --root on a read-only disk", lambda c: ["hub", "serve", "--root", c.readonly() / "hub", "--port", "0"], 4,
         [rf"{P}/ro/hub: (read-only file system|permission denied)"], r"writable|permissions"),

    # ---- import, init --from-command and verify: cards and commands from elsewhere
    Case("init --from-command: text that holds no lm-eval command", lambda c: ["init", "--from-command", "echo hello", "-o", c.tmp / "new.yaml"], 2,
         [r"no lm-eval invocation \(.*\) in the text"], r"python -m lm_eval",
         check=lambda c, out, err: not (c.tmp / "new.yaml").exists() or pytest.fail("written")),
    Case("import: a source that is neither a file, a folder nor a repo id", lambda c: ["import", c.tmp / "nope", "-o", c.tmp / "new.yaml"], 1,
         [rf"{P}/nope: no such file, folder or Hub repo id"], r"README\.md"),
    Case("import: a card that is not UTF-8", lambda c: ["import", c.tmp / "card.md", "-o", c.tmp / "new.yaml"], 1,
         [rf"{P}/card\.md: not UTF-8 text \(.*\)"], None, setup=lambda c: write(c.tmp / "card.md", b"\xff\xfe# caf\xe9\n"),
         check=lambda c, out, err: not (c.tmp / "new.yaml").exists() or pytest.fail("written")),
    Case("import: -o over the project's manifest", lambda c: ["import", c.proj / "cards" / "lora-full" / "README.md", "-o", c.m], 1,
         [rf"{P}/hubkit\.yaml: already exists"], r"--force"),
    Case("verify: a source that does not exist", lambda c: ["verify", c.tmp / "nope"], 1,
         [rf"{P}/nope: no such README and not a Hub repo id"], r"owner/name"),
    Case("verify: a card that documents no lm-eval command", lambda c: ["verify", c.tmp / "README.md"], 1,
         [r"the card documents no lm-eval command to run"], r"hubkit import",
         setup=lambda c: write(c.tmp / "README.md", "---\nlicense: mit\n---\n# A card\n\nNo numbers, no command.\n")),
    Case("verify: --data that is not TASK:SPLIT=FILE", lambda c: ["verify", c.proj / "cards" / "lora-full" / "README.md", "--data", "bad"], 1,
         [r"--data bad: expected TASK:SPLIT=FILE, e\.g\. arc_challenge:test=arc/test\.jsonl"], None),
    Case("verify: a card whose peft= is a folder on the author's machine", lambda c: ["verify", c.tmp / "README.md", "--out", c.tmp / "v"], 1,
         [rf"{P}/README\.md: the adapter the card loads \(/home/author/my-lora\) is neither a folder here nor a Hub repo id"], r"peft=",
         setup=lambda c: write(c.tmp / "README.md", "# A card\n\n```\nlm_eval --model hf --model_args pretrained=org/base,peft=/home/author/my-lora --tasks arc_easy\n```\n\n| Task | acc |\n|---|---|\n| arc_easy | 0.61 |\n"),
         check=lambda c, out, err: not (c.tmp / "v" / "runs").exists() or pytest.fail("an eval started")),
]


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.fixture
def ctx(evaluated, tmp_path, monkeypatch):
    proj = evaluated.live
    if proj.exists() or proj.is_symlink():
        force_rmtree(proj)
    shutil.copytree(evaluated.pristine, proj, symlinks=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(scratch)  # whatever a command writes beside it lands here, not in the checkout
    with ExitStack() as stack:
        yield Ctx(proj, scratch, stack, monkeypatch)


def run_cli(capsys, argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_output(out: str, err: str) -> None:
    assert "Traceback" not in out + err, err
    assert TOKEN not in out + err, "the token reached the output"
    assert "internal error" not in err, err


@pytest.mark.parametrize("case", list(_params()))
def test_case(case: Case, ctx: Ctx, capsys):
    if case.setup:
        case.setup(ctx)
    argv = case.argv(ctx)
    capsys.readouterr()
    before = snapshot(ctx.proj, (".hubkit", *case.may_change))
    planted = mentions_token(ctx.proj)  # a case may plant the token in a file, to see it refused
    code, out, err = run_cli(capsys, argv)
    assert_clean_output(out, err)
    errors, hints = split(err)
    assert (code, len(errors)) == (case.code, len(case.errors)), err
    for line, pattern in zip(errors, case.errors):
        assert re.fullmatch(pattern, line), f"{line!r} does not match {pattern!r}"
    if case.hint is None:
        assert hints == [], err
    else:
        assert len(hints) == 1 and re.search(case.hint, hints[0]), err
    if case.stdout is not None:
        assert re.fullmatch(case.stdout, out.strip()), out
    elif code != 0:
        assert out == "", out
    if case.check:
        case.check(ctx, out, err)
    assert snapshot(ctx.proj, (".hubkit", *case.may_change)) == before, "the project's files changed"
    assert mentions_token(ctx.proj) == planted, "the token was written into the project"




# -- cases that need real processes, signals or two commands at once ---------------------------------


def test_special_two_evals_in_the_same_second_get_two_records(ctx, capsys):
    """Run ids are made of the second an eval started and what it ran: a second eval of the same
    thing in the same second (a rerun, or two terminals) used to die on FileExistsError."""
    from hubkit.eval.records import load_record

    first = ctx.record()
    started = load_record(first).started_at
    ctx.monkeypatch.setattr("hubkit.eval.core.now", lambda: started)
    before = snapshot(first, ())
    code, out, err = run_cli(capsys, ["eval", "-m", ctx.m, "--artifact", "lora-full", "--no-base", "--limit", "4", "--rerun"])
    assert_clean_output(out, err)
    assert code == 0, err
    second = first.with_name(first.name + "-2")
    assert load_record(second, full_check=True).ok and load_record(first, full_check=True).ok
    assert snapshot(first, ()) == before  # the first record is untouched
    assert second.name in out
    # the "-2" record's paths and reproduce line name its own folder (they named the first one's)
    assert f"{second.name}/" in (second / "record.json").read_text()
    naming_first = [p.name for p in second.rglob("*") if p.is_file() and f"{first}/".encode() in p.read_bytes()]
    assert naming_first == []


def test_special_malformed_data_row_names_file_and_line(ctx, capsys):
    """A broken JSONL row used to fail inside lm-eval's dataset loader ('DatasetGenerationError ...
    Trailing data at position 192'), naming neither the file nor the line, once per strategy."""
    with (ctx.proj / "data" / "test.jsonl").open("a") as fh:
        fh.write('{"id": "broken", "question": \n')
    lines = (ctx.proj / "data" / "test.jsonl").read_text().count("\n")
    ctx.edit(lambda d: d["evals"]["demo"].update(strategies=["fp32-lora"]))  # one attempt is enough to see it
    code, out, err = run_cli(capsys, ["eval", "-m", ctx.m, "--artifact", "lora-full", "--no-base", "--limit", "4"])
    assert_clean_output(out, err)
    errors, _ = split(err)
    assert code == 2 and len(errors) == 1 and out == "", err
    assert re.fullmatch(rf"evals\.demo\.data\.arc_challenge\.files\.test: {ctx.proj}/data/test\.jsonl line {lines}: not valid JSON: .*", errors[0]), errors[0]
    assert [p.name for p in (ctx.proj / "runs").iterdir() if p.name.startswith(".partial")] == []


def test_special_a_full_disk_never_leaves_a_truncated_card(ctx, capsys):
    """README.md used to be rewritten in place: a disk that filled up mid-write left a truncated
    card where the complete one was."""
    first = ctx.tmp / "measure"
    assert main(["card", "-m", str(ctx.m), "--artifact", "lora-full", "--out", str(first)]) == 0
    size = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    shutil.copytree(first, ctx.tmp / "disk" / "cards")  # the cards as they were, where an injected fault finds them (a mount hides them)
    with full_disk(ctx.tmp / "disk", size=f"{(size // 4096 + 3) * 4096}") as disk:
        out = disk.path / "cards"
        if disk.real:  # a tmpfs just big enough for them
            assert main(["card", "-m", str(ctx.m), "--artifact", "lora-full", "--out", str(out)]) == 0
        complete = (out / "lora-full" / "README.md").read_bytes()
        ctx.edit(lambda d: d["project"].update(summary="A longer summary. " * 20000))  # ~360 kB more per card
        capsys.readouterr()
        code, _, err = run_cli(capsys, ["card", "-m", ctx.m, "--artifact", "lora-full", "--out", out])
        assert_clean_output("", err)
        assert code == 4 and split(err)[0] == [f"disk full while writing {out / 'lora-full' / 'README.md'}"], err
        assert (out / "lora-full" / "README.md").read_bytes() == complete  # the old card, whole


def _start_hub_process(root: Path, faults: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "HUBKIT_HUB_FAULTS"}
    if faults:
        env["HUBKIT_HUB_FAULTS"] = json.dumps(faults)
    proc = subprocess.Popen([*RUN_CMD, "hub", "serve", "--root", str(root), "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def test_special_hub_killed_mid_upload_then_publish_again(ctx, capsys, monkeypatch):
    """The hub dies while the weights are uploading: one line saying nothing was committed, exit 3;
    the next publish to a live hub sends everything, byte for byte."""
    no_retry_wait(monkeypatch)
    root = ctx.tmp / "hubroot"
    proc, url = _start_hub_process(root, {"exit_on": r"PUT /lfs-upload/"})
    try:
        code, out, err = run_cli(capsys, ["publish", "-m", ctx.m, "--artifact", "lora-full", "--endpoint", url])
        assert proc.wait(timeout=30) == 17  # it really died there
    finally:
        proc.kill()
        proc.wait()
    assert_clean_output(out, err)
    errors, hints = split(err)
    assert code == 3 and out == "" and len(errors) == 1, err
    assert re.fullmatch(rf"{LORA_FULL_REPO}: lost the Hub at {url}: .* while uploading files; nothing was committed to {LORA_FULL_REPO}", errors[0]), errors[0]
    proc, url = _start_hub_process(root)
    try:
        code, out, err = run_cli(capsys, ["publish", "-m", ctx.m, "--artifact", "lora-full", "--endpoint", url])
        assert code == 0, err
        from huggingface_hub import hf_hub_download

        from hubkit.hub.client import hub_session

        with hub_session(url):
            sent = Path(hf_hub_download(LORA_FULL_REPO, "adapter_model.safetensors", endpoint=url)).read_bytes()
        assert sent == (ctx.adapter / "adapter_model.safetensors").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_special_a_same_size_edit_with_its_mtime_restored_is_published(ctx, capsys):
    """The hash cache keyed on size and mtime only: an edit of the same size with the mtime put
    back (a `touch -r`, an rsync -t) published nothing ("nothing to send")."""
    from huggingface_hub import hf_hub_download

    from hubkit.hub.client import hub_session

    url = ctx.hub()
    argv = ["publish", "-m", ctx.m, "--artifact", "lora-full", "--endpoint", url]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    cfg = ctx.adapter / "adapter_config.json"
    before = cfg.stat()
    edited = cfg.read_bytes().replace(b'"lora_dropout": 0.05', b'"lora_dropout": 0.07')
    assert len(edited) == before.st_size and edited != cfg.read_bytes()
    cfg.write_bytes(edited)
    os.utime(cfg, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert main(["card", "-m", str(ctx.m), "--artifact", "lora-full"]) == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, argv)
    assert_clean_output(out, err)
    assert code == 0 and "adapter_config.json" in err, err
    with hub_session(url):
        sent = Path(hf_hub_download(LORA_FULL_REPO, "adapter_config.json", endpoint=url, token=TOKEN)).read_bytes()
    assert sent == edited


def test_special_two_publishes_creating_one_new_repo(ctx):
    """Two `hubkit publish` processes create the same new repo at once (a 409 whose body has no
    url used to be `KeyError: 'url'`): both succeed, the repo holds the adapter once."""
    hub = ctx.hub()
    env = dict(os.environ)
    cmd = [*RUN_CMD, "publish", "-m", str(ctx.m), "--artifact", "lora-full", "--endpoint", hub]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert_clean_output(out, err)
        assert code == 0, err
    files = hub_session_repo_files(hub, LORA_FULL_REPO)
    assert files.count("adapter_model.safetensors") == 1 and "adapter_config.json" in files


def test_special_debug_shows_a_traceback_with_the_token_redacted(tmp_path):
    secret_dir = tmp_path / f"adapter-{TOKEN}"
    secret_dir.mkdir()
    env = dict(os.environ, HUBKIT_DEBUG="1")
    proc = subprocess.run([*RUN_CMD, "inspect", str(secret_dir)], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr and "InspectError" in proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout and "adapter-***" in proc.stderr
    plain = subprocess.run([*RUN_CMD, "inspect", str(secret_dir)], env=dict(os.environ), capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and plain.stderr.startswith("error: ") and TOKEN not in plain.stderr


def test_special_a_reader_that_went_away_is_not_an_error():
    """`hubkit schema | head -c1`: the reader closes the pipe; no traceback, no 'Exception ignored'."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # before the child writes: its first write hits a closed pipe
    try:
        proc = subprocess.run([*RUN_CMD, "schema"], stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_special_an_unexpected_exception_is_one_line_asking_for_a_report(ctx, capsys):
    def boom(*a, **k):
        raise RuntimeError(f"something odd with {TOKEN}\nsecond line")

    ctx.monkeypatch.setattr("hubkit.inspection.inspect_path", boom)
    code, out, err = run_cli(capsys, ["inspect", ctx.adapter])
    assert code == 70 and out == "" and "Traceback" not in err and TOKEN not in err
    assert err.splitlines() == [
        f"error: internal error: RuntimeError: something odd with *** (at hubkit/cli.py:{_line_of('hubkit/cli.py', 'facts = inspect_path(path')})",
        "hint: This is a bug in hubkit: run the same command with HUBKIT_DEBUG=1 for the traceback, and report it.",
    ]


def _line_of(rel: str, text: str) -> int:
    lines = (Path(__file__).parents[1] / rel).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_special_ctrl_c_is_exit_130_in_one_word(ctx, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    ctx.monkeypatch.setattr("hubkit.inspection.inspect_path", interrupted)
    code, out, err = run_cli(capsys, ["inspect", ctx.adapter])
    assert code == 130 and out == "" and err.strip() == "interrupted"


# -- library errors that reach the command line unwrapped -------------------------------------------
# Raised by hand where a library would raise them, because most of these cannot be produced here
# for real (a gated repo, a 429, a dying disk); the cases above produce the ones that can be.


def _http_error(cls_name: str, status: int, url: str):
    import httpx2
    from huggingface_hub import errors

    request = httpx2.Request("POST", url)
    response = httpx2.Response(status, request=request, headers={"x-error-message": "server says no"})
    return getattr(errors, cls_name)(f"{status} Client Error: for url {url}", response=response, server_message="server says no")


def _library_errors():
    def connect():
        import httpx2

        return httpx2.ConnectError("[Errno 111] Connection refused", request=httpx2.Request("GET", "https://hub.example.org/api/models/a/b?token=" + TOKEN))

    def read_timeout():
        import requests

        err = requests.exceptions.ReadTimeout("read timed out")
        err.request = requests.Request("GET", "https://mirror.example.org/x").prepare()
        return err

    def hf_validation():
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id("owner/..")
        except Exception as exc:  # noqa: BLE001
            return exc

    def pydantic_error():
        from pydantic import BaseModel

        class Record(BaseModel):
            value: int

        try:
            Record.model_validate({"value": "many"})
        except Exception as exc:  # noqa: BLE001
            return exc

    def yaml_error():
        try:
            yaml.safe_load("a: [1\nb: 2")
        except Exception as exc:  # noqa: BLE001
            return exc

    def json_error():
        try:
            json.loads('{"a": 1,,}')
        except Exception as exc:  # noqa: BLE001
            return exc

    def safetensors_error():
        from safetensors.numpy import load

        try:
            load(b"\x00" * 16)
        except Exception as exc:  # noqa: BLE001
            return exc

    def wrapped_in_runtime_error():
        import httpx2

        try:
            raise httpx2.RemoteProtocolError("Server disconnected without sending a response.", request=httpx2.Request("PUT", "http://127.0.0.1:9/lfs"))
        except Exception as inner:  # noqa: BLE001
            try:
                raise RuntimeError("Error while uploading 'adapter_model.safetensors' to the Hub.") from inner
            except RuntimeError as outer:
                return outer

    return [
        ("raw ConnectError names the endpoint, not the URL's token", connect, 3, r"cannot reach https://hub\.example\.org: connection refused", r"--endpoint"),
        ("requests ReadTimeout", read_timeout, 3, r"cannot reach https://mirror\.example\.org: no answer in time \(ReadTimeout\)", r"--endpoint"),
        ("a RuntimeError around a dropped connection", wrapped_in_runtime_error, 3, r"cannot reach http://127\.0\.0\.1:9: the server closed the connection \(RemoteProtocolError\)", r"--endpoint"),
        ("HFValidationError is about the repo id", hf_validation, 2, r"invalid Hub repo id: Repo id must use alphanumeric chars.*'owner/\.\.'\.", r"repo_id in hubkit\.yaml"),
        ("401", lambda: _http_error("HfHubHTTPError", 401, "https://hub.example.org/api/models/me/x/commit/main"), 3,
         r"me/x on https://hub\.example\.org: the Hub refused the token, or none was given \(HTTP 401\): server says no", r"hf auth login"),
        ("403", lambda: _http_error("HfHubHTTPError", 403, "https://hub.example.org/api/models/me/x/commit/main"), 3, r"me/x on https://hub\.example\.org: forbidden \(HTTP 403\): server says no", r"write access"),
        ("gated repo", lambda: _http_error("GatedRepoError", 403, "https://hub.example.org/api/models/org/gated/revision/main"), 3,
         r"org/gated on https://hub\.example\.org: the repo is gated and this token has not been granted access \(HTTP 403\): server says no", r"Request access"),
        ("repo not found", lambda: _http_error("RepositoryNotFoundError", 404, "https://hub.example.org/api/models/org/none/revision/main"), 3,
         r"org/none on https://hub\.example\.org: not found \(or not visible to this token\) \(HTTP 404\): server says no", r"Check the repo id"),
        ("429", lambda: _http_error("HfHubHTTPError", 429, "https://hub.example.org/api/models/me/x/preupload/main"), 3, r"me/x on https://hub\.example\.org: rate limited \(HTTP 429\): server says no", r"Wait"),
        ("502", lambda: _http_error("HfHubHTTPError", 502, "https://hub.example.org/api/models/me/x/preupload/main"), 3, r"me/x on https://hub\.example\.org: the Hub failed \(HTTP 502\): server says no", r"try again later"),
        ("pydantic", pydantic_error, 2, r"Record: value: Input should be a valid integer, unable to parse string as an integer", r"expected fields"),
        ("yaml", yaml_error, 2, r"not valid YAML \(line 2, column 2\): expected ',' or '\]', but got ':'", r"Fix the YAML"),
        ("json", json_error, 2, r"not valid JSON \(line 1, column 9: Expecting property name enclosed in double quotes\)", r"damaged or truncated"),
        ("safetensors", safetensors_error, 2, r"not a readable safetensors file \(.*\)", r"damaged or truncated"),
        ("too many open files", lambda: OSError(24, "Too many open files"), 4, r"too many open files", r"ulimit -n"),
        ("out of memory", lambda: MemoryError(), 4, r"out of memory", r"more memory"),
        ("I/O error", lambda: OSError(5, "Input/output error", "/data/model.safetensors"), 4, r"/data/model\.safetensors: input/output error", r"disk"),
        ("port in use, port named", lambda: _bind_busy(), 4, r"port \d+ on 127\.0\.0\.1 is in use", r"--port"),
    ]


def _bind_busy() -> OSError:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        server_address = taken.getsockname()  # noqa: F841 - the table reads it from this frame
        try:
            with socket.socket() as again:
                again.bind(server_address)
        except OSError as exc:
            return exc


@pytest.mark.parametrize("name, make, code, line, hint", _library_errors(), ids=[c[0] for c in _library_errors()])
def test_special_library_errors_become_one_line(ctx, capsys, name, make, code, line, hint):
    exc = make()
    assert isinstance(exc, BaseException), name

    def raising(*a, **k):
        raise exc

    ctx.monkeypatch.setattr("hubkit.inspection.inspect_path", raising)
    got, out, err = run_cli(capsys, ["inspect", ctx.adapter])
    assert_clean_output(out, err)
    errors, hints = split(err)
    assert got == code and len(errors) == 1 and len(hints) == 1, err
    assert re.fullmatch(line, errors[0]), errors[0]
    assert re.search(hint, hints[0]), hints[0]


def test_special_exit_codes_are_documented_in_help_and_readme(capsys):
    from hubkit.errortable import EXIT_CODES

    code, out, _ = run_cli(capsys, ["--help"])
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert code == 0
    for number, meaning in EXIT_CODES:
        assert re.search(rf"^\s+{number}\s+{re.escape(meaning)}$", out, re.M), (number, out)
        assert re.search(rf"^\| `{number}` \|", readme, re.M), f"README lacks exit code {number}"


def test_the_catalogue_is_past_80_cases():
    specials = [name for name in globals() if name.startswith("test_special_")]
    assert len(CASES) + len(specials) - 1 + len(_library_errors()) > 80, (len(CASES), len(specials))
