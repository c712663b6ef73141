"""`hubkit publish`: push each artifact (files, rendered card, backing run records) to its Hub
repo in one atomic commit, after showing a plan.

- **Plan first**: local files are compared with the remote tree (git blob sha1 for regular files,
  sha256 for LFS files, as the Hub reports them), so the plan says what is added, changed,
  unchanged and deleted, and how many bytes would be sent. Local hashes are cached by the file's
  size, mtime, ctime, inode and device, so a republish does not re-read unchanged weights, and an
  edit that keeps the size and puts the mtime back is still seen.
- **Atomic**: one `create_commit` per repo with `parent_commit` set to the head the plan was
  made against (a concurrent change makes the commit fail, not interleave). Nothing changed
  means no commit at all.
- **Safe**: secrets (`hubkit.secrets`: every file streamed whole, safetensors through their
  header) and pickles are refused before anything is sent; only files hubkit put there
  (recorded in `hubkit-publish.json` in the repo) are ever deleted; a README edited on the Hub
  since hubkit's last publish is not overwritten without --force. The token is passed to
  huggingface_hub and never printed or written.
- **Truthful when it fails**: each repo goes through phases (create, upload, commit, tag) and a
  failure says which one broke, what was committed (with its sha) and what was not. A tag that
  could not be made is remembered in `.hubkit/published.json` and made by the next publish.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import fnmatch
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import PublishError
from .eval.records import SEAL, portable_seal
from .hub import client
from .portable import machine_paths, portable
from .manifest import Artifact, Manifest, check_manifest
from .secrets import looks_like_secret_file, redact_text, scan_bytes, scan_file

RECORD = "hubkit-publish.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CHECKPOINT_PATTERNS = ("*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json", "hubkit_merge.json")
TOKENIZER_PATTERNS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# A cache entry is trusted only for a file last changed this long before it was hashed: file
# times tick in steps (a jiffy on Linux, 2 s on FAT), so a change within the same step as the
# hashing would leave every stamp as it was ("racy git", as git calls it).
RACY_NS = 2_000_000_000


def _stamp(st: os.stat_result) -> dict:
    """What identifies one version of a file without reading it. ctime cannot be set by any
    user call, so an edit that keeps the size and restores the mtime still changes it; a file
    replaced by another (rename over it, a new checkout) has a new inode."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino, "dev": st.st_dev}


class HashCache:
    """sha256 and git sha1 of local files, remembered by path and `_stamp` (size, mtime, ctime,
    inode, device). Entries made within RACY_NS of the file's last change are recomputed."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            self.data = {}
        if not isinstance(self.data, dict):
            self.data = {}

    def put(self, p: Path, sha256: str, hashed_at_ns: int) -> None:
        """Remember a sha256 computed elsewhere (huggingface_hub's, at upload), which began
        reading the file at `hashed_at_ns` (time.time_ns())."""
        self.data[str(p.resolve())] = {"stat": _stamp(p.stat()), "hashed_at_ns": hashed_at_ns, "sha256": sha256, "sha1": None}

    def get(self, p: Path, need_sha1: bool = True) -> tuple[str, str | None]:
        """(sha256, git blob sha1) of the file at `p`, from the cache when its stamp is unchanged."""
        st = p.stat()
        key = str(p.resolve())
        hit = self.data.get(key)
        if (
            isinstance(hit, dict) and hit.get("stat") == _stamp(st)
            and hit.get("hashed_at_ns", 0) - st.st_ctime_ns > RACY_NS
            and (hit.get("sha1") or not need_sha1)
        ):
            return hit["sha256"], hit["sha1"]
        hashed_at = time.time_ns()  # before reading: a change while reading is then "after" it
        sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % st.st_size)
        with p.open("rb") as fh:
            while block := fh.read(1 << 20):
                sha256.update(block)
                sha1.update(block)
        self.data[key] = {"stat": _stamp(st), "hashed_at_ns": hashed_at, "sha256": sha256.hexdigest(), "sha1": sha1.hexdigest()}
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
    missing_tag: str | None = None  # a commit an earlier publish made but could not tag

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
            "readme_conflict": bool(self.readme_conflict), "run_ids": self.run_ids, "missing_tag": self.missing_tag,
        }


# -- endpoints --------------------------------------------------------------------------------------


@contextlib.contextmanager
def hub_session(endpoint: str | None):
    """Publishing needs the network unless the endpoint is a local hub (see hub.client).

    huggingface_hub's own warnings are held back meanwhile: a dead connection would print two
    lines per retry before `push` reports the failure in one."""
    hf_logger = logging.getLogger("huggingface_hub")
    level = hf_logger.level
    hf_logger.setLevel(max(level, logging.ERROR))
    try:
        with client.hub_session(endpoint, error=PublishError, need_network=True):
            yield
    finally:
        hf_logger.setLevel(level)


def hub_error(exc: Exception, repo_id: str, repo_type: str = "model") -> PublishError:
    """One clear message (with the next step) for a Hub error; never the token."""
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


def network_failure(exc: BaseException) -> BaseException | None:
    """The transport-level failure (refused, reset, timed out, closed mid-response) behind
    `exc`, following its causes (huggingface_hub wraps a failed upload in a RuntimeError), or
    None when `exc` is something else. An HTTP error answer is not a network failure."""
    from huggingface_hub.errors import HfHubHTTPError

    transport: tuple[type, ...] = (ConnectionError, TimeoutError)
    for module in ("httpx2", "httpx", "httpcore"):
        with contextlib.suppress(ImportError):
            mod = __import__(module)
            transport += tuple(getattr(mod, n) for n in ("TransportError", "TimeoutException", "NetworkError", "RemoteProtocolError") if hasattr(mod, n))
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, HfHubHTTPError):
            return None
        if isinstance(exc, transport):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _describe_network(exc: BaseException) -> str:
    """A few words for a transport failure: "connection refused", "no answer within 10 s"..."""
    name = type(exc).__name__
    text = redact_text(str(exc).splitlines()[0] if str(exc) else "")
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return f"no answer in time ({name})"
    if "refused" in text.lower():
        return "connection refused"
    if "RemoteProtocol" in name or "disconnected" in text.lower() or "reset" in text.lower():
        return f"the server closed the connection ({name})"
    return f"{name}: {text[:120]}" if text else name


def unreachable(exc: BaseException, endpoint: str) -> PublishError:
    """The one-line error for a Hub that cannot be reached while planning (nothing was sent)."""
    return PublishError(
        f"cannot reach the Hub at {endpoint}: {_describe_network(exc)}; nothing was sent",
        hint="Check --endpoint (or HF_ENDPOINT) and the network, then run the same command again; "
        "for a local hub start `hubkit hub serve` (HF_HUB_ETAG_TIMEOUT sets how long to wait for an answer).",
    )


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
        if looks_like_secret_file(p.name):
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
    """Refuse the first file that holds a secret (hubkit.secrets: HF tokens, private keys, cloud
    keys, and the token in use): every file is read whole in bounded chunks, safetensors through
    their header and any bytes outside their tensors."""
    extra = [token] if token else []
    for f in files:
        found = scan_bytes(f.content, extra) if f.content is not None else scan_file(f.source, extra)
        if found:
            raise PublishError(
                f"{f.path_in_repo}: contains what looks like a secret, {found}; refusing to publish",
                hint="Remove it from the file (run records are scrubbed by hubkit eval; check hand-made files and safetensors metadata).",
            )


def card_and_records(manifest: Manifest, name: str, cards_dir: Path | None, runs_dir: Path, say=lambda m: None) -> tuple[list[LocalFile], list[str]]:
    """The card `hubkit card` rendered (README.md, results.png: the one that was reviewed) and the
    run records that back it (eval/<run-id>/...).

    Raises CardError when the card on disk is stale or was edited, and PublishError naming the run
    and the file when a run record is damaged (a file it names deleted or edited): its numbers
    would silently drop off the card."""
    from .card import reviewed_card

    card = reviewed_card(manifest, name, cards_dir or manifest.root / "cards", runs_dir=runs_dir, say=say)
    if card.damaged:
        raise PublishError(
            f"{card.damaged[0]}; nothing was sent",
            hint=f"Run records are read-only once written: restore the file, or move the record out of {runs_dir} and run `hubkit eval` again.",
        )
    out = [LocalFile("README.md", None, card.text.encode())]
    if card.chart is not None:
        out.append(LocalFile("results.png", None, card.chart))
    out += [LocalFile(rel, None, text.encode()) for rel, text in sorted(card.eval_results.items())]
    # what `hubkit verify` needs to re-check this card anywhere: setups, claims, lineage
    from .evalslice import SLICE, manifest_slice

    setups = sorted({r.setup for r in card.records} | {k for k, v in manifest.evals.items() if v.artifacts and name in v.artifacts})
    if setups or manifest.claims:
        body, data_files = manifest_slice(manifest, name, setups)
        out.append(LocalFile(SLICE, None, body))
        out += [LocalFile(rel, path) for rel, path in data_files]
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
    """What publishing `files` to `repo_id` would add, change, keep and delete."""
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    plan = RepoPlan(name, repo_id, repo_type, exists=True, head=None, run_ids=run_ids)
    try:
        # huggingface_hub sets no timeout of its own: a hub that accepts and never answers would
        # hang the plan forever. Its metadata timeout (HF_HUB_ETAG_TIMEOUT, 10 s) bounds it.
        info = api.repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
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
        if not f.sha256 or (not is_lfs and not f.sha1):  # same size: compare content (cached, see HashCache)
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
        if p.missing_tag:
            lines.append(f"  ! commit {p.missing_tag[:8]} of an earlier publish has no tag (that publish failed to make it): this publish makes it")
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
    cards_dir: str | Path | None = None,
    say=lambda m: None,
) -> PublishResult:
    """Publish the manifest's artifacts (or one): files, the card `hubkit card` rendered (checked
    to be current and unedited: the card you reviewed), backing run records.

    Returns the plans, commits and tags (see `push`). Raises ManifestError when the manifest's
    checks fail for these artifacts (`check_manifest`), PublishError for anything refused or failed.
    """
    names = [artifact] if artifact else list(manifest.artifacts)
    if not names:
        raise PublishError("the manifest has no artifacts to publish")
    for n in names:
        if n not in manifest.artifacts:
            raise PublishError(f"no artifact named {n!r}", hint=f"Known artifacts: {', '.join(manifest.artifacts)}.")
        if not manifest.artifacts[n].repo_id:
            raise PublishError(f"artifacts.{n}.repo_id: not set", hint="Set repo_id: owner/name for each artifact to publish.")
    # Paths inside the project and existing, a Hub base model for the card: refused before the
    # Hub is asked anything.
    for warning in check_manifest(manifest, purpose="publish", artifacts=names):
        say(f"warning: {warning}")
    runs = Path(runs_dir) if runs_dir else manifest.root / "runs"
    targets = []
    for n in names:
        art = manifest.artifacts[n]
        files = artifact_files(manifest, n, art, allow_pickle=allow_pickle)
        extra, run_ids = card_and_records(manifest, n, Path(cards_dir) if cards_dir else None, runs, say=say)
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
    sent; a README edited on the Hub is kept unless `force`; a tag an earlier publish could not
    make is made.

    Raises PublishError with one line saying what failed, what was committed (with its sha) and
    what was not: for Hub errors, an unreachable or hanging hub, and a hub that dies mid-publish.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = token or os.environ.get("HF_TOKEN")
    cache = HashCache(cache_path)
    endpoint_url = client.effective_endpoint(endpoint)
    for t in targets:  # refused before the Hub is even asked
        _fill(t.files)
        _scan_for_secrets(t.files, token)
    with hub_session(endpoint):
        api = HfApi(endpoint=endpoint, token=token)
        plans, payloads = [], {}
        known = _published(cache_path).get(endpoint_url, {})
        for t in targets:
            try:
                plan = plan_repo(api, t.name, t.repo_id, t.files, t.run_ids, revision=revision, cache=cache, repo_type=t.repo_type)
                pending = (known.get(f"{t.repo_type}/{t.repo_id}") or {}).get("pending_tag")
                if pending and plan.exists and not create_pr:
                    plan.missing_tag = _untagged_commit(api, plan, pending)
                    if plan.missing_tag is None and not dry_run:  # tagged since, or never landed
                        _remember(cache_path, endpoint_url, t.repo_id, t.repo_type, pending_tag=None)
            except HfHubHTTPError as exc:
                raise hub_error(exc, t.repo_id, t.repo_type) from None
            except Exception as exc:
                net = network_failure(exc)
                if net is None:
                    raise
                raise unreachable(net, endpoint_url) from None
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
        for plan in plans:
            step = _Step(plan, endpoint_url, done=dict(commits))
            try:
                _publish_repo(api, plan, payloads[plan.artifact], step, cache, cache_path, revision=revision, private=private,
                              create_pr=create_pr, message=message, force=force, say=say)
            except PublishError:
                _close_progress_bars()
                raise
            except Exception as exc:
                _close_progress_bars()
                raise step.failure(api, exc, cache_path, revision) from None
            finally:
                cache.save()
            commits[plan.repo_id] = step.commit
            if step.tag:
                tags[plan.repo_id] = step.tag
        return PublishResult(plans, commits, tags)


@dataclass
class _Step:
    """Where one repo's publish is: the phase it reached and what it has committed so far, so a
    failure can say exactly what landed."""

    plan: RepoPlan
    endpoint: str
    done: dict[str, str | None]  # repos published earlier in this run -> commit (None: unchanged)
    phase: str = "plan"  # create, tag-earlier, upload, commit, tag
    commit: str | None = None
    tag: str | None = None
    record_sha1: str | None = None
    concurrent: bool = False  # the repo was created by someone else between plan and create

    def _earlier(self) -> str:
        if not self.done:
            return ""
        return "; done before it: " + ", ".join(f"{r} {'unchanged' if c is None else 'committed ' + c[:8]}" for r, c in self.done.items())

    def failure(self, api, exc: Exception, cache_path: Path, revision: str) -> PublishError:
        """The error for `exc` raised in the current phase, saying what is on the Hub now."""
        repo, rt = self.plan.repo_id, self.plan.repo_type
        http = _http_error_in(exc)
        net = None if http is not None else network_failure(exc)
        if http is None and net is None:
            raise exc  # not the Hub's doing: a bug, shown with its traceback
        if http is not None:
            cause = hub_error(http, repo, rt)
            what, hint = cause.message.removeprefix(f"{repo}: "), cause.hint
        else:
            what = f"lost the Hub at {self.endpoint}: {_describe_network(net)}"
            hint = "Run `hubkit publish` again when the Hub answers: it plans afresh and sends only what is missing."
        again = "Run `hubkit publish` again: it sees the untagged commit and makes the missing tag."
        if self.phase == "tag":
            return PublishError(
                f"{repo}: committed {self.commit[:8]} ({self.commit}), but the tag was not made: {what}; "
                f"the files are published, the tag is missing{self._earlier()}",
                hint=again,
            )
        if self.phase == "tag-earlier":
            sha = self.plan.missing_tag or ""
            return PublishError(f"{repo}: could not make the missing tag on {sha[:8]} ({sha}), an earlier publish's commit: {what}; nothing new was committed{self._earlier()}", hint=again)
        if self.phase == "commit" and net is not None:
            # The request may have reached the Hub before the connection broke: look.
            head = _head(api, repo, rt, revision)
            if head is not None and head != self.plan.head and _holds_record(api, self.plan, head, self.record_sha1):
                _remember(cache_path, self.endpoint, repo, rt, commit=head, pending_tag={"commit": head, "run_ids": self.plan.run_ids})
                return PublishError(
                    f"{repo}: the commit landed as {head[:8]} ({head}), but the connection broke before its tag was made ({what}); "
                    f"the tag is missing{self._earlier()}",
                    hint=again,
                )
            if head is None:
                _remember(cache_path, self.endpoint, repo, rt, pending_tag={"parent": self.plan.head, "record_sha1": self.record_sha1, "run_ids": self.plan.run_ids})
                return PublishError(
                    f"{repo}: {what} while committing; whether the commit landed is unknown (a commit is all or nothing){self._earlier()}",
                    hint="Run `hubkit publish` again when the Hub answers: it finds out, makes the tag if the commit landed, and sends only what is missing otherwise.",
                )
        doing = {"create": " while creating the repo", "upload": " while uploading files", "commit": " while committing"}.get(self.phase, "")
        return PublishError(f"{repo}: {what}{doing}; nothing was committed to {repo}{self._earlier()}", hint=hint)


def _close_progress_bars() -> None:
    """End the upload bars huggingface_hub left open when it failed, so the error that follows
    starts on its own line instead of after a half-drawn bar."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", None) or ()):
        with contextlib.suppress(Exception):
            bar.close()


def _http_error_in(exc: BaseException):
    """The HfHubHTTPError behind `exc` (huggingface_hub wraps failed uploads in RuntimeError)."""
    from huggingface_hub.errors import HfHubHTTPError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, HfHubHTTPError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _head(api, repo_id: str, repo_type: str, revision: str) -> str | None:
    """The branch's head now, or None when the Hub does not answer (quickly)."""
    try:
        return api.repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=5).sha
    except Exception:  # noqa: BLE001 - only a best-effort look after a failure
        return None


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _publish_repo(api, plan: RepoPlan, target: Target, step: _Step, cache: HashCache, cache_path: Path, *, revision: str,
                  private: bool, create_pr: bool, message: str | None, force: bool, say) -> None:
    """Create (if needed), upload, commit and tag one repo, moving `step` through its phases."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    rt = plan.repo_type
    if plan.missing_tag:
        step.phase = "tag-earlier"
        tag = _make_tag(api, plan, plan.missing_tag, plan.run_ids)
        _remember(cache_path, step.endpoint, plan.repo_id, rt, tag=tag, pending_tag=None)
        step.tag = tag
        say(f"{plan.repo_id}: tagged {plan.missing_tag[:8]} {tag} (the tag an earlier publish could not make)")
    if plan.noop:
        if not plan.missing_tag:
            _remember(cache_path, step.endpoint, plan.repo_id, rt, commit=plan.head)
        return
    if not plan.exists:
        step.phase = "create"
        try:
            api.create_repo(plan.repo_id, private=private, exist_ok=False, repo_type=rt, space_sdk=target.space_sdk)
        except HfHubHTTPError as exc:
            if _status(exc) != 409:
                raise
            step.concurrent = True  # created by someone else since the plan: fine, re-plan on it
        except KeyError:
            pass  # a hub whose answer lacks "url" (huggingface_hub reads it): the repo was made all the same
        plan.head = api.repo_info(plan.repo_id, repo_type=rt, revision=revision).sha
        if step.concurrent:
            fresh = plan_repo(api, plan.artifact, plan.repo_id, target.files, plan.run_ids, revision=revision, cache=cache, repo_type=rt)
            say(f"{plan.repo_id}: created meanwhile by another publish; planned again against {fresh.head[:8]}:\n" + format_plan([fresh]))
            if fresh.readme_conflict and not force:
                raise PublishError(f"{plan.repo_id}: README.md was written by another publish meanwhile; nothing was committed", hint="Look at the repo, then run `hubkit publish` again (--force to overwrite).")
            _adopt(plan, fresh)
            if plan.noop:
                _remember(cache_path, step.endpoint, plan.repo_id, rt, commit=plan.head)
                say(f"{plan.repo_id}: already holds these files: nothing to commit")
                return
    step.phase = "upload"
    sending = plan.added + plan.changed
    gone = [f for f in sending if f.source is not None and not f.source.is_file()]
    if gone:
        raise PublishError(f"{gone[0].source}: gone since the plan was made; nothing was committed to {plan.repo_id}{step._earlier()}", hint="Put the file back (or rebuild the artifact), then run `hubkit publish` again.")
    hashed_at = time.time_ns()
    ops = [CommitOperationAdd(f.path_in_repo, f.content if f.content is not None else str(f.source)) for f in sending]
    for f, op in zip(sending, ops):
        f.sha256 = f.sha256 or op.upload_info.sha256.hex()  # hashed once, by huggingface_hub
        if f.source is not None:
            cache.put(f.source, f.sha256, hashed_at)  # so the next plan need not read it again
    api.preupload_lfs_files(plan.repo_id, additions=ops, repo_type=rt, revision=revision, create_pr=create_pr, free_memory=False)
    record = {
        "hubkit_version": __version__,
        "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "artifact": plan.artifact,
        "run_ids": plan.run_ids,
        "readme_sha1": next((f.sha1 for f in target.files if f.path_in_repo == "README.md"), None),
        "files": {f.path_in_repo: {"sha256": f.sha256, "size": f.size} for f in target.files},
    }
    record_bytes = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    step.record_sha1 = hashlib.sha1(b"blob %d\0" % len(record_bytes) + record_bytes).hexdigest()
    ops += [CommitOperationDelete(p) for p in plan.deleted]
    ops.append(CommitOperationAdd(RECORD, record_bytes))
    summary = message or f"hubkit publish: {plan.artifact}" + (f" (runs {', '.join(plan.run_ids)})" if plan.run_ids else "")
    step.phase = "commit"
    try:
        info = api.create_commit(
            plan.repo_id, ops, commit_message=summary, revision=revision, create_pr=create_pr,
            parent_commit=plan.head if not create_pr else None, repo_type=rt,
        )
    except HfHubHTTPError as exc:
        if _status(exc) != 412:
            raise
        # Someone committed since the plan (two publishes of one project at once, typically):
        # when the repo now holds exactly these files, there is nothing left to do; otherwise the
        # 412 stands, and the user re-plans.
        fresh = plan_repo(api, plan.artifact, plan.repo_id, target.files, plan.run_ids, revision=revision, cache=cache, repo_type=rt)
        if not fresh.noop:
            raise
        _adopt(plan, fresh)
        _remember(cache_path, step.endpoint, plan.repo_id, rt, commit=plan.head)
        say(f"{plan.repo_id}: another publish committed these same files meanwhile ({plan.head[:8]}): nothing to commit")
        return
    step.commit = info.oid
    if create_pr:
        _remember(cache_path, step.endpoint, plan.repo_id, rt, commit=info.oid)
        say(f"{plan.repo_id}: committed {info.oid[:8]} ({info.pr_url})")
        return
    # Written down before tagging: if the tag fails (or hubkit is killed), the next publish
    # knows which commit is waiting for its tag.
    _remember(cache_path, step.endpoint, plan.repo_id, rt, commit=info.oid, pending_tag={"commit": info.oid, "run_ids": plan.run_ids})
    step.phase = "tag"
    step.tag = _make_tag(api, plan, info.oid, plan.run_ids)
    _remember(cache_path, step.endpoint, plan.repo_id, rt, tag=step.tag, pending_tag=None)
    say(f"{plan.repo_id}: committed {info.oid[:8]}, tagged {step.tag}")


def _adopt(plan: RepoPlan, fresh: RepoPlan) -> None:
    """Take over a fresh plan's view of the remote (after a concurrent create)."""
    for name in ("exists", "head", "added", "changed", "unchanged", "deleted", "kept_remote", "readme_conflict"):
        setattr(plan, name, getattr(fresh, name))


def _make_tag(api, plan: RepoPlan, commit: str, run_ids: list[str]) -> str:
    """Tag `commit` as hubkit's publish of it; returns the tag's name."""
    from huggingface_hub.errors import HfHubHTTPError

    tag = f"hubkit-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}-{commit[:8]}"
    try:
        api.create_tag(plan.repo_id, tag=tag, revision=commit, tag_message="runs: " + (", ".join(run_ids) or "none"), repo_type=plan.repo_type)
    except HfHubHTTPError as exc:
        # The same name can only come from a retry within the same second, for the same commit.
        if _status(exc) != 409 or _tags_at(api, plan, commit) == []:
            raise
    return tag


def _tags_at(api, plan: RepoPlan, commit: str) -> list[str]:
    refs = api.list_repo_refs(plan.repo_id, repo_type=plan.repo_type)
    return [t.name for t in refs.tags if t.target_commit == commit and t.name.startswith("hubkit-")]


def _holds_record(api, plan: RepoPlan, commit: str, record_sha1: str | None) -> bool:
    """Whether `commit` holds the publish record whose git sha1 is `record_sha1`: the record
    carries its publish time, so no other commit holds the same one."""
    if not record_sha1:
        return False
    try:
        entries = api.list_repo_tree(plan.repo_id, repo_type=plan.repo_type, revision=commit)
        return any(getattr(e, "path", None) == RECORD and getattr(e, "blob_id", None) == record_sha1 for e in entries)
    except Exception:  # noqa: BLE001 - a best-effort look after a failure
        return False


def _untagged_commit(api, plan: RepoPlan, pending: dict) -> str | None:
    """The commit an earlier publish made but could not tag, when it is on the Hub and still
    has no hubkit tag; None otherwise. `pending` names the commit, or (when the connection broke
    during the commit) the parent it was made on and the git sha1 of its publish record."""
    sha = pending.get("commit")
    if sha is None and pending.get("parent") and pending.get("record_sha1"):
        history = [c.commit_id for c in api.list_repo_commits(plan.repo_id, repo_type=plan.repo_type, revision=plan.head)]
        if pending["parent"] not in history or history.index(pending["parent"]) == 0:
            return None  # that commit never landed
        child = history[history.index(pending["parent"]) - 1]
        if _holds_record(api, plan, child, pending["record_sha1"]):
            sha = child
    if sha is None:
        return None
    return None if _tags_at(api, plan, sha) else sha


def _published(cache_path: Path) -> dict:
    try:
        data = json.loads(cache_path.with_name("published.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


_KEEP = object()


def _remember(cache_path: Path, endpoint: str, repo_id: str, repo_type: str, *, commit=_KEEP, tag=_KEEP, pending_tag=_KEEP) -> None:
    """What this repo's branch was after our last publish, per endpoint, in .hubkit/published.json
    beside the hash cache: `hubkit space build` pins the adapters it shows to these commits, and
    `pending_tag` names a commit still waiting for its tag. Only the fields given change."""
    path = cache_path.with_name("published.json")
    data = _published(cache_path)
    entry = data.setdefault(endpoint, {}).setdefault(f"{repo_type}/{repo_id}", {})
    for key, value in (("commit", commit), ("tag", tag), ("pending_tag", pending_tag)):
        if value is _KEEP:
            continue
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
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
