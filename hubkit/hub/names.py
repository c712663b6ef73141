"""What the local hub accepts as a name, and where on disk a name may lead.

Every component a client sends (repo id, revision, path in a repo, LFS oid, commit sha) is
checked here before it reaches the store, and every file the store opens goes through
`confined`, which resolves the path (symlinks included) and refuses anything outside the root.
The two layers are deliberate: the checks give clients precise 400s, and confinement holds
even if a check is ever wrong or a store was written by an older, laxer server.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# First URL segments the server routes itself: a namespace with one of these names could never
# be reached through the web routes (/datasets/..., /api/...), so none can be created.
RESERVED_NAMESPACES = frozenset({"api", "models", "datasets", "spaces", "lfs-upload", "lfs-verify", "login", "logout", "new", "settings", "docs", "static", "resolve"})

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# git check-ref-format's refusals: controls, space, ~ ^ : ? * [ \ and DEL
_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_DRIVE = re.compile(r"[A-Za-z]:")
MAX_REF_LENGTH = 255
MAX_PATH_BYTES = 1024


class BadName(ValueError):
    """A name a client sent is not acceptable; the message says which and why."""


class OutsideRoot(PermissionError):
    """A path would lead outside the hub's root (a bug, or a store tampered with)."""


def repo_id(namespace: object, name: object) -> str:
    """`namespace/name` checked by huggingface_hub's own repo-id rules (ASCII letters, digits,
    `-_.`, at most 96 characters each, no `--` or `..`, no leading/trailing `-`/`.`, no `.git`
    suffix). Raises BadName."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(namespace, str) or not isinstance(name, str) or not namespace or not name:
        raise BadName("a repo id needs a namespace and a name (strings)")
    rid = f"{namespace}/{name}"
    try:
        validate_repo_id(rid)
    except HFValidationError as exc:
        raise BadName(f"invalid repo id: {exc}") from None
    return rid


def new_repo_id(namespace: object, name: object) -> str:
    """As `repo_id`, and the namespace must not be one the server routes itself."""
    rid = repo_id(namespace, name)
    if str(namespace).lower() in RESERVED_NAMESPACES:
        raise BadName(f"the namespace {namespace!r} is reserved")
    return rid


def revision(rev: object) -> str:
    """A branch, tag or commit name as git's check-ref-format accepts it (no `..`, no control
    characters, no component starting with `.`, no `.lock` suffix...). Raises BadName."""
    if not isinstance(rev, str) or not rev:
        raise BadName("a revision must be a non-empty string")
    bad = (
        len(rev) > MAX_REF_LENGTH
        or _REF_BAD_CHARS.search(rev)
        or ".." in rev
        or "@{" in rev
        or "//" in rev
        or rev == "@"
        or rev.startswith(("/", "-"))
        or rev.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") or part.endswith(".lock") for part in rev.split("/"))
    )
    if bad:
        raise BadName(f"invalid revision {rev[:80]!r}")
    return rev


def new_ref_name(name: object) -> str:
    """A name for a new branch or tag: a valid revision, not under `refs/` (pull requests live
    there) and not shaped like a commit id."""
    name = revision(name)
    if name.startswith("refs/") or _HEX40.fullmatch(name):
        raise BadName(f"{name!r} cannot be a branch or tag name")
    return name


def repo_path(path: object, *, allow_empty: bool = False) -> str:
    """A file or folder path inside a repo: relative, `/`-separated, no empty, `.` or `..`
    component, no backslash, no control character, no drive letter, nothing under `.git/`.
    With `allow_empty`, "" (the repo's root) passes. Raises BadName."""
    if not isinstance(path, str):
        raise BadName("a path must be a string")
    if path == "" and allow_empty:
        return path
    if not path or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadName("a path must have 1 to 1024 bytes")
    if "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise BadName(f"invalid path {path[:80]!r}: backslash or control character")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in path):
        raise BadName("invalid path: not UTF-8")
    if path.startswith("/") or _DRIVE.match(path):
        raise BadName(f"invalid path {path[:80]!r}: must be relative")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadName(f"invalid path {path[:80]!r}: empty, '.' or '..' component")
    if parts[0] == ".git" or ".git" in parts[:-1]:
        raise BadName(f"invalid path {path[:80]!r}: inside .git")
    return path


def lfs_oid(oid: object) -> str:
    """An LFS object id: 64 lowercase hex digits (a sha256). Raises BadName."""
    if not isinstance(oid, str) or not _HEX64.fullmatch(oid):
        raise BadName("an LFS oid is 64 lowercase hex digits")
    return oid


def commit_sha(sha: object) -> str:
    """A commit id: 40 lowercase hex digits. Raises BadName."""
    if not isinstance(sha, str) or not _HEX40.fullmatch(sha):
        raise BadName("a commit id is 40 lowercase hex digits")
    return sha


def is_commit_sha(value: str) -> bool:
    return bool(_HEX40.fullmatch(value))


def confined(base: Path, *parts: str) -> Path:
    """`base/parts...` resolved (symlinks followed); raises OutsideRoot unless it is `base`
    itself or below it. `base` must already be resolved."""
    path = base.joinpath(*parts).resolve()
    if path != base and not path.is_relative_to(base):
        raise OutsideRoot(f"{'/'.join(parts)[:120]!r} leads outside the hub's root")
    return path
