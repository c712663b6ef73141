"""`hubkit publish`: push each artifact (files, rendered card, backing run records) to its Hub
repo in one atomic commit, after showing a plan.

- **Plan first**: local files are compared with the remote tree (git blob sha1 for regular files,
  sha256 for LFS files, as the Hub reports them), so the plan says what is added, changed,
  unchanged and deleted, and how many bytes would be sent. Local hashes are cached by (size,
  mtime), so a republish does not re-read unchanged weights.
- **Atomic**: one `create_commit` per repo with `parent_commit` set to the head the plan was
  made against (a concurrent change makes the commit fail, not interleave). Nothing changed
  means no commit at all.
- **Safe**: secrets and pickles are refused before anything is sent; only files hubkit put
  there (recorded in `hubkit-publish.json` in the repo) are ever deleted; a README edited on the
  Hub since hubkit's last publish is not overwritten without --force. The token is passed to
  huggingface_hub and never printed or written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import fnmatch
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import PublishError
from .eval.records import SEAL, portable_seal
from .hub import client
from .portable import machine_paths, portable
from .manifest import Artifact, Manifest

RECORD = "hubkit-publish.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
SECRET_NAMES = (".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", ".netrc", ".git-credentials", "token", "*token*.txt", "credentials*", ".huggingface", "*.p12")
_TOKEN_TEXT = re.compile(rb"hf_[A-Za-z0-9]{30,}|-----BEGIN (?:RSA |OPENSSH |EC )?PRIVATE KEY-----|AKIA[0-9A-Z]{16}")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CHECKPOINT_PATTERNS = ("*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json", "hubkit_merge.json")
TOKENIZER_PATTERNS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class HashCache:
    """sha256 and git sha1 of local files, remembered by (path, size, mtime_ns)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            self.data = {}

    def put(self, p: Path, sha256: str) -> None:
        """Remember a sha256 computed elsewhere (huggingface_hub's, at upload)."""
        st = p.stat()
        self.data[str(p.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256, "sha1": None}

    def get(self, p: Path, need_sha1: bool = True) -> tuple[str, str | None]:
        st = p.stat()
        key = str(p.resolve())
        hit = self.data.get(key)
        if hit and hit["size"] == st.st_size and hit["mtime_ns"] == st.st_mtime_ns and (hit["sha1"] or not need_sha1):
            return hit["sha256"], hit["sha1"]
        sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % st.st_size)
        with p.open("rb") as fh:
            while block := fh.read(1 << 20):
                sha256.update(block)
                sha1.update(block)
        self.data[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256.hexdigest(), "sha1": sha1.hexdigest()}
        return self.data[key]["sha256"], self.data[key]["sha1"]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, sort_keys=True))
        os.replace(tmp, self.path)


@dataclass
class LocalFile:
    path_in_repo: str
    source: Path | None  # None for generated content
    content: bytes | None = None
    size: int = 0
    sha256: str = ""
    sha1: str = ""


@dataclass
class RepoPlan:
    artifact: str
    repo_id: str
    repo_type: str
    exists: bool
    head: str | None
    added: list[LocalFile] = field(default_factory=list)
    changed: list[LocalFile] = field(default_factory=list)
    unchanged: list[LocalFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept_remote: list[str] = field(default_factory=list)  # remote files hubkit did not put there
    readme_conflict: str | None = None  # a diff, when the README changed on the Hub
    run_ids: list[str] = field(default_factory=list)

    @property
    def bytes_to_send(self) -> int:
        return sum(f.size for f in self.added + self.changed)

    @property
    def noop(self) -> bool:
        return self.exists and not (self.added or self.changed or self.deleted)

    def to_dict(self) -> dict:
        def files(items):
            return [{"path": f.path_in_repo, "size": f.size} for f in items]

        return {
            "artifact": self.artifact, "repo_id": self.repo_id, "repo_type": self.repo_type, "exists": self.exists, "head": self.head,
            "added": files(self.added), "changed": files(self.changed), "unchanged": [f.path_in_repo for f in self.unchanged],
            "deleted": self.deleted, "kept_remote": self.kept_remote, "bytes_to_send": self.bytes_to_send, "noop": self.noop,
            "readme_conflict": bool(self.readme_conflict), "run_ids": self.run_ids,
        }


# -- endpoints --------------------------------------------------------------------------------------


@contextlib.contextmanager
def hub_session(endpoint: str | None):
    """Publishing needs the network unless the endpoint is a local hub (see hub.client)."""
    with client.hub_session(endpoint, error=PublishError, need_network=True):
        yield


def hub_error(exc: Exception, repo_id: str, repo_type: str = "model") -> PublishError:
    """One clear message (with the next step) for a Hub error; never the token."""
    from .secrets import redact_text

    status = getattr(getattr(exc, "response", None), "status_code", None)
    msg = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    hints = {
        401: "The token was refused: set HF_TOKEN to a valid token (or run `hf auth login`).",
        403: f"The token cannot write to {repo_id}: use a token with write access to its namespace.",
        404: f"{repo_id} (or the revision) does not exist, or the token cannot see it.",
        409: "The repo or ref already exists in a conflicting state.",
        412: "The repo changed while publishing (someone committed); run `hubkit publish` again to re-plan.",
    }
    if repo_type == "space" and (status == 402 or (status == 403 and re.search(r"plan|hardware|zerogpu|sdk", str(exc), re.I))):
        return PublishError(
            f"{repo_id}: the Hub refused to host this Space: {msg}" + (f" (HTTP {status})" if status else ""),
            hint="New Gradio Spaces need a paid plan unless they run on ZeroGPU: upgrade the account, request ZeroGPU hardware, or deploy to an organization that has a plan.",
        )
    hint = hints.get(status) or ("The Hub had a server error; it was retried. Try again later." if status and status >= 500 else None)
    return PublishError(f"{repo_id}: {msg}" + (f" (HTTP {status})" if status else ""), hint=hint)


# -- what to publish ---------------------------------------------------------------------------------


def _match(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def artifact_files(manifest: Manifest, name: str, art: Artifact, *, allow_pickle: bool) -> list[LocalFile]:
    root = manifest.resolve(art.path)
    if root is None or not root.is_dir():
        raise PublishError(f"artifacts.{name}.path: {root} is not a folder", hint="Build the artifact (train, or `hubkit merge`) or fix its path.")
    wanted = (ADAPTER_FILES if art.kind == "adapter" else CHECKPOINT_PATTERNS) + TOKENIZER_PATTERNS
    files = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if _match(p.name, SECRET_NAMES):
            raise PublishError(f"{p}: looks like a secret; refusing to publish it", hint="Move it out of the artifact folder.")
        if p.suffix in PICKLE_SUFFIXES:
            if not allow_pickle:
                raise PublishError(f"{p}: pickled weights can run code when loaded; refusing to publish", hint="Save as safetensors, or pass --allow-pickle if you must.")
            files.append(LocalFile(rel, p))
            continue
        if "/" in rel or not _match(p.name, wanted):
            continue  # only the files a loader needs; the README comes from `hubkit card`
        files.append(LocalFile(rel, p))
    if art.kind == "adapter" and not any(f.path_in_repo == "adapter_config.json" for f in files):
        raise PublishError(f"{root}: no adapter_config.json", hint="Is artifacts.*.path the adapter folder?")
    return files


def _scan_for_secrets(files: list[LocalFile], token: str | None) -> None:
    for f in files:
        data = f.content if f.content is not None else None
        if data is None and f.source is not None and f.source.stat().st_size < 5_000_000 and not f.path_in_repo.endswith(".safetensors"):
            data = f.source.read_bytes()
        if data is None:
            continue
        if (token and len(token) >= 8 and token.encode() in data) or _TOKEN_TEXT.search(data):
            raise PublishError(f"{f.path_in_repo}: contains what looks like a token or private key; refusing to publish", hint="Remove it from the file (run records are scrubbed by hubkit eval; check hand-made files).")


def card_and_records(manifest: Manifest, name: str, cards_dir: Path | None, runs_dir: Path) -> tuple[list[LocalFile], list[str]]:
    """The rendered card (README.md, results.png) and the run records that back it (eval/<run-id>/...)."""
    from .card import render_card

    card = render_card(manifest, name, runs_dir=runs_dir)
    out = [LocalFile("README.md", None, card.text.encode())]
    if card.chart is not None:
        out.append(LocalFile("results.png", None, card.chart))
    run_ids = []
    places = machine_paths(manifest.root)
    for rec in card.records:
        run_ids.append(rec.run_id)
        sealed = {}
        for p in sorted(rec.path.rglob("*")):
            if p.is_file() and p.suffix != ".py" and p.name != SEAL:
                rel = portable(p.relative_to(rec.path).as_posix(), places, mangled=True)
                content = _portable_content(p, places)
                out.append(LocalFile(f"eval/{rec.run_id}/{rel}", p if content is None else None, content))
                sealed[rel] = content if content is not None else p
        # the published copy names no machine path, so it carries a seal of its own
        out.append(LocalFile(f"eval/{rec.run_id}/{SEAL}", None, portable_seal(rec.path, sealed)))
    return out, sorted(run_ids)


_TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".log", ".txt", ".md")


def _portable_content(path: Path, places: list[tuple[str, str]]) -> bytes | None:
    """The file's bytes with machine paths replaced, or None when it names none (then it is
    uploaded from disk as is)."""
    if path.suffix not in _TEXT_SUFFIXES:
        return None
    data = path.read_bytes()
    if not any(p.encode() in data or p.replace("/", "__").encode() in data for p, _ in places):
        return None
    return portable(data.decode("utf-8", errors="surrogateescape"), places, mangled=True).encode("utf-8", errors="surrogateescape")


# -- the plan --------------------------------------------------------------------------------------


def _fill(files: list[LocalFile]) -> None:
    """Sizes, and hashes of generated content. File hashes are computed only when a remote file
    could be the same (see plan_repo): a new file needs none, since huggingface_hub hashes what
    it uploads anyway."""
    for f in files:
        if f.content is not None:
            f.size = len(f.content)
            f.sha256 = hashlib.sha256(f.content).hexdigest()
            f.sha1 = hashlib.sha1(b"blob %d\0" % f.size + f.content).hexdigest()
        else:
            f.size = f.source.stat().st_size


def plan_repo(api, name: str, repo_id: str, files: list[LocalFile], run_ids: list[str], *, revision: str, cache: HashCache, repo_type: str = "model") -> RepoPlan:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    plan = RepoPlan(name, repo_id, repo_type, exists=True, head=None, run_ids=run_ids)
    try:
        info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
        plan.head = info.sha
        remote = {e.path: e for e in api.list_repo_tree(repo_id, repo_type=repo_type, revision=plan.head, recursive=True) if getattr(e, "size", None) is not None and not hasattr(e, "tree_id")}
    except RepositoryNotFoundError:
        plan.exists, remote = False, {}
    except RevisionNotFoundError:
        raise PublishError(f"{repo_id}: revision {revision!r} does not exist", hint="Create the branch first, or publish to main.") from None
    previous = {}
    if RECORD in remote:
        # through `api`, so the download goes to the same endpoint with the same token
        try:
            previous = json.loads(Path(api.hf_hub_download(repo_id, RECORD, repo_type=repo_type, revision=plan.head)).read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
    local = {f.path_in_repo: f for f in files}
    for path, f in local.items():
        r = remote.get(path)
        if r is None:
            plan.added.append(f)
            continue
        if r.size != f.size:
            plan.changed.append(f)
            continue
        is_lfs = getattr(r, "lfs", None) is not None
        if not f.sha256:  # same size: compare content (cached by size and mtime)
            f.sha256, f.sha1 = cache.get(f.source, need_sha1=not is_lfs)
        same = (r.lfs.sha256 == f.sha256) if is_lfs else (r.blob_id == f.sha1)
        (plan.unchanged if same else plan.changed).append(f)
    ours = set((previous.get("files") or {}).keys())
    for path in sorted(remote):
        if path in local or path in (RECORD, ".gitattributes"):
            continue
        (plan.deleted if path in ours else plan.kept_remote).append(path)
    # A README someone edited on the Hub after hubkit's last publish is theirs until --force.
    readme = remote.get("README.md")
    if readme is not None and previous.get("readme_sha1") and readme.blob_id != previous["readme_sha1"] and "README.md" in [f.path_in_repo for f in plan.changed]:
        theirs = Path(api.hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=plan.head)).read_text(encoding="utf-8", errors="replace")
        f = local["README.md"]
        mine = (f.content if f.content is not None else f.source.read_bytes()).decode("utf-8", errors="replace")
        plan.readme_conflict = "".join(difflib.unified_diff(theirs.splitlines(True), mine.splitlines(True), "README.md (on the Hub)", "README.md (hubkit)"))
    return plan


def format_plan(plans: list[RepoPlan]) -> str:
    lines = []
    for p in plans:
        state = "new repo" if not p.exists else f"at {p.head[:8] if p.head else '?'}"
        lines.append(f"{p.repo_id} ({p.artifact}, {state}): " + ("nothing to send" if p.noop else f"{len(p.added)} added, {len(p.changed)} changed, {len(p.deleted)} deleted, {len(p.unchanged)} unchanged; {_size(p.bytes_to_send)} to send"))
        for mark, items in (("+", p.added), ("~", p.changed)):
            runs: dict[str, list[LocalFile]] = {}
            for f in items:
                m = re.match(r"(eval/[^/]+)/", f.path_in_repo)
                if m:  # a run record: one line for its files
                    runs.setdefault(m.group(1), []).append(f)
                else:
                    lines.append(f"  {mark} {f.path_in_repo} ({_size(f.size)})")
            for run, fs in runs.items():
                lines.append(f"  {mark} {run}/ (run record: {len(fs)} files, {_size(sum(f.size for f in fs))})")
        for path in p.deleted:
            lines.append(f"  - {path}")
        for path in p.kept_remote:
            lines.append(f"  = {path} (not put there by hubkit: left alone)")
        if p.readme_conflict:
            lines.append("  ! README.md was edited on the Hub since hubkit last published it (--force to overwrite):")
            lines += ["    " + x.rstrip("\n") for x in p.readme_conflict.splitlines()[:40]]
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"


# -- executing --------------------------------------------------------------------------------------


@dataclass
class PublishResult:
    plans: list[RepoPlan]
    commits: dict[str, str | None]  # repo -> commit sha (None: nothing to do)
    tags: dict[str, str]


@dataclass
class Target:
    """One repo to push: what hubkit calls it, where it goes, and the files it should hold."""

    name: str
    repo_id: str
    files: list[LocalFile]
    run_ids: list[str] = field(default_factory=list)
    repo_type: str = "model"
    space_sdk: str | None = None  # for repo_type "space"


def publish(
    manifest: Manifest,
    *,
    artifact: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    private: bool = False,
    revision: str = "main",
    create_pr: bool = False,
    message: str | None = None,
    allow_pickle: bool = False,
    force: bool = False,
    runs_dir: str | Path | None = None,
    say=lambda m: None,
) -> PublishResult:
    """Publish the manifest's artifacts (or one): files, rendered card, backing run records."""
    names = [artifact] if artifact else list(manifest.artifacts)
    if not names:
        raise PublishError("the manifest has no artifacts to publish")
    for n in names:
        if n not in manifest.artifacts:
            raise PublishError(f"no artifact named {n!r}", hint=f"Known artifacts: {', '.join(manifest.artifacts)}.")
        if not manifest.artifacts[n].repo_id:
            raise PublishError(f"artifacts.{n}.repo_id: not set", hint="Set repo_id: owner/name for each artifact to publish.")
    runs = Path(runs_dir) if runs_dir else manifest.root / "runs"
    targets = []
    for n in names:
        art = manifest.artifacts[n]
        files = artifact_files(manifest, n, art, allow_pickle=allow_pickle)
        extra, run_ids = card_and_records(manifest, n, None, runs)
        targets.append(Target(n, art.repo_id, files + extra, run_ids))
    return push(
        targets, cache_path=manifest.root / ".hubkit" / "hash-cache.json", endpoint=endpoint, token=token, dry_run=dry_run,
        private=private, revision=revision, create_pr=create_pr, message=message, force=force, say=say,
    )


def push(
    targets: list[Target],
    *,
    cache_path: Path,
    endpoint: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    private: bool = False,
    revision: str = "main",
    create_pr: bool = False,
    message: str | None = None,
    force: bool = False,
    say=lambda m: None,
) -> PublishResult:
    """Plan each target against its remote repo, then (unless `dry_run`) make one commit per repo
    that changed, tagged, with hubkit's publish record. Secrets are refused before anything is
    sent; a README edited on the Hub is kept unless `force`."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = token or os.environ.get("HF_TOKEN")
    cache = HashCache(cache_path)
    with hub_session(endpoint):
        api = HfApi(endpoint=endpoint, token=token)
        plans, payloads = [], {}
        for t in targets:
            _fill(t.files)
            _scan_for_secrets(t.files, token)
            try:
                plan = plan_repo(api, t.name, t.repo_id, t.files, t.run_ids, revision=revision, cache=cache, repo_type=t.repo_type)
            except HfHubHTTPError as exc:
                raise hub_error(exc, t.repo_id, t.repo_type) from None
            plans.append(plan)
            payloads[t.name] = t
        cache.save()
        say(format_plan(plans))
        conflicts = [p for p in plans if p.readme_conflict]
        if conflicts and not force and not dry_run:
            raise PublishError(
                ", ".join(p.repo_id for p in conflicts) + ": README.md was edited on the Hub since hubkit last published it",
                hint="Merge those edits into hubkit.yaml or your templates (the diff is above), or pass --force to overwrite.",
            )
        commits: dict[str, str | None] = {}
        tags: dict[str, str] = {}
        if dry_run:
            return PublishResult(plans, commits, tags)
        endpoint_url = client.effective_endpoint(endpoint)
        for plan in plans:
            target = payloads[plan.artifact]
            if plan.noop:
                commits[plan.repo_id] = None
                _remember(cache_path, endpoint_url, plan.repo_id, plan.repo_type, plan.head, None)
                continue
            rt = plan.repo_type
            try:
                if not plan.exists:
                    api.create_repo(plan.repo_id, private=private, exist_ok=True, repo_type=rt, space_sdk=target.space_sdk)
                    plan.head = api.repo_info(plan.repo_id, repo_type=rt, revision=revision).sha
                local = target.files
                ops = [
                    CommitOperationAdd(f.path_in_repo, f.content if f.content is not None else str(f.source))
                    for f in plan.added + plan.changed
                ]
                for f, op in zip(plan.added + plan.changed, ops):
                    f.sha256 = f.sha256 or op.upload_info.sha256.hex()  # hashed once, by huggingface_hub
                    if f.source is not None:
                        cache.put(f.source, f.sha256)  # so the next plan need not read it again
                record = {
                    "hubkit_version": __version__,
                    "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "artifact": plan.artifact,
                    "run_ids": plan.run_ids,
                    "readme_sha1": next((f.sha1 for f in local if f.path_in_repo == "README.md"), None),
                    "files": {f.path_in_repo: {"sha256": f.sha256, "size": f.size} for f in local},
                }
                ops += [CommitOperationDelete(p) for p in plan.deleted]
                ops.append(CommitOperationAdd(RECORD, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()))
                summary = message or f"hubkit publish: {plan.artifact}" + (f" (runs {', '.join(plan.run_ids)})" if plan.run_ids else "")
                info = api.create_commit(
                    plan.repo_id, ops, commit_message=summary, revision=revision, create_pr=create_pr,
                    parent_commit=plan.head if not create_pr else None, repo_type=rt,
                )
                commits[plan.repo_id] = info.oid
                if not create_pr:
                    tag = f"hubkit-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}-{info.oid[:8]}"
                    api.create_tag(plan.repo_id, tag=tag, revision=info.oid, tag_message="runs: " + (", ".join(plan.run_ids) or "none"), repo_type=rt)
                    tags[plan.repo_id] = tag
                _remember(cache_path, endpoint_url, plan.repo_id, rt, info.oid, tags.get(plan.repo_id))
                say(f"{plan.repo_id}: committed {info.oid[:8]}" + (f", tagged {tags.get(plan.repo_id)}" if plan.repo_id in tags else "") + (f" ({info.pr_url})" if create_pr else ""))
            except HfHubHTTPError as exc:
                raise hub_error(exc, plan.repo_id, plan.repo_type) from None
            except OSError as exc:  # connection refused or reset (httpx errors are not OSErrors)
                raise _unreachable(exc, plan.repo_id) from None
            except Exception as exc:
                if type(exc).__module__.startswith(("httpx", "httpcore")):
                    raise _unreachable(exc, plan.repo_id) from None
                raise
        cache.save()
        return PublishResult(plans, commits, tags)


def _remember(cache_path: Path, endpoint: str, repo_id: str, repo_type: str, commit: str | None, tag: str | None) -> None:
    """What this repo's main was after our last publish, per endpoint, in .hubkit/published.json
    beside the hash cache: `hubkit space build` pins the adapters it shows to these commits."""
    path = cache_path.with_name("published.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        data = {}
    entry = data.setdefault(endpoint, {}).setdefault(f"{repo_type}/{repo_id}", {})
    entry["commit"] = commit
    if tag:
        entry["tag"] = tag
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def published_commits(manifest: Manifest, endpoint: str | None = None) -> dict[str, str]:
    """repo_id -> commit of the model repos hubkit last published from this manifest's folder."""
    path = manifest.root / ".hubkit" / "published.json"
    try:
        data = json.loads(path.read_text()).get(client.effective_endpoint(endpoint), {})
    except (OSError, json.JSONDecodeError):
        return {}
    return {k.split("/", 1)[1]: v["commit"] for k, v in data.items() if k.startswith("model/") and v.get("commit")}


def _unreachable(exc: Exception, repo_id: str) -> PublishError:
    from .secrets import redact_text

    return PublishError(
        f"{repo_id}: the Hub connection failed mid-publish ({type(exc).__name__}: {redact_text(str(exc))[:200]})",
        hint="Nothing partial was committed (a commit is all or nothing); run `hubkit publish` again when the Hub is reachable.",
    )
