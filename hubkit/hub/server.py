"""A local Hub-compatible server: the subset of the Hugging Face Hub's HTTP API that the
unmodified `huggingface_hub` client uses to create repos, commit (regular and LFS files), list,
download, tag and branch (protocol notes: hub-protocol.md), the Jobs API (`hubkit.hub.jobs`:
run, inspect, list, cancel, logs), plus the Hub's web pages (`hubkit.hub.pages`).

The real Hub cannot be reached from the machines hubkit is built and tested on, and air-gapped
users cannot reach it either; this server lets the genuine client publish for real, end to end.
Clients need `HF_ENDPOINT=<server url>` and `HF_HUB_DISABLE_XET=1` set before huggingface_hub is
imported (the Xet upload protocol is not implemented; its token route answers 501 saying so).

Storage under `root/`: content-addressed blobs (`objects/<sha256>`); per repo a commit DAG
(`repos/<type>/<ns>/<name>/commits/<sha1>.json`, each holding its whole tree) and refs
(`refs.json`); `incoming/` for uploads and request bodies in flight; `trash/` for repos being
deleted. Writes happen under one lock, each commit written before its ref moves, so a reader
never sees a partial commit.

What keeps it safe to run as a shared hub:
- every name a client sends is validated (`hubkit.hub.names`) and every file the store touches
  is resolved and confined under the root, so nothing outside it is read, created or deleted;
- with a token, every route needs it (`Authorization: Bearer`), except LFS uploads, which need
  the signed, size-bound URL that an authorized batch call handed out; pages also accept the
  session cookie of `/login`, for reading only;
- request bodies are bounded (413 past the limit) and large ones are streamed to disk;
- a body that is not read is drained (small) or the connection closed (large), so it is never
  parsed as the next request;
- uploads abandoned mid-way and objects no commit references are swept after a grace period;
- an unexpected failure answers a bare 500, its traceback going to the server's stderr only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import names
from .names import REPO_TYPES, URL_PREFIX, BadName, OutsideRoot

PREFIX = URL_PREFIX  # kept for callers of the old name
TYPE_SEGMENT = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".png", ".jpg", ".jpeg", ".parquet", ".arrow", ".zip", ".gz", ".tar", ".h5", ".onnx", ".msgpack", ".model", ".npy", ".pkl")
LFS_THRESHOLD = 10 * 1024 * 1024

MiB = 1 << 20
DEFAULT_MAX_JSON = 16 * MiB  # repo, tag, preupload, batch, validate-yaml bodies
DEFAULT_MAX_COMMIT = 1024 * MiB  # an NDJSON commit (regular files travel in it, base64)
DEFAULT_MAX_UPLOAD = 50 * 1024 * MiB  # one LFS object (the Hub's own per-file limit)
DRAIN_LIMIT = MiB  # an unread body up to this size is drained to keep the connection; larger ones close it
UPLOAD_URL_TTL = 3600  # seconds a signed LFS upload URL stays valid
SESSION_COOKIE = "hubkit_hub_session"

_CONTENT_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
    ".json": "application/json", ".md": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8",
    ".yaml": "text/plain; charset=utf-8", ".yml": "text/plain; charset=utf-8", ".py": "text/plain; charset=utf-8",
    ".jsonl": "text/plain; charset=utf-8", ".csv": "text/plain; charset=utf-8",
}  # never text/html or image/svg+xml: a file from a repo must not run script on this origin


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer_oid(sha256: str, size: int) -> str:
    """git's oid of an LFS file: that of its pointer file."""
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return git_blob_oid(pointer)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class HubError(Exception):
    """An HTTP error answer: status, message (X-Error-Message), Hub error code (X-Error-Code)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


_REF_LABEL = {"tags": "Tag", "branches": "Branch"}


class Store:
    """Repos, commits, refs and blobs on disk, every path confined under `root`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.base = self.root.resolve()
        for d in ("objects", "incoming", "repos", "trash"):
            self.path(d).mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self._cards: OrderedDict = OrderedDict()  # (type, repo, commit) -> parsed front matter
        self._cards_lock = threading.Lock()

    def path(self, *parts: str) -> Path:
        """`root/parts...`, resolved; OutsideRoot if that leaves the root."""
        return names.confined(self.base, *parts)

    def temp_path(self, suffix: str = "") -> Path:
        return self.path("incoming", uuid.uuid4().hex + suffix)

    # -- repos ---------------------------------------------------------------------------------
    def repo_dir(self, rtype: str, repo_id: str) -> Path:
        if rtype not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {rtype!r}")
        ns, _, name = repo_id.partition("/")
        names.repo_id(ns, name)
        return self.path("repos", rtype, ns, name)

    def exists(self, rtype: str, repo_id: str) -> bool:
        return (self.repo_dir(rtype, repo_id) / "refs.json").is_file()

    def require(self, rtype: str, repo_id: str) -> Path:
        if not self.exists(rtype, repo_id):
            raise HubError(404, f"Repository Not Found for url: {repo_id}", "RepoNotFound")
        return self.repo_dir(rtype, repo_id)

    def _read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:  # deleted meanwhile
            raise HubError(404, "Repository Not Found", "RepoNotFound") from None
        except (OSError, ValueError) as exc:
            raise HubError(500, f"the hub's store is damaged at {path.relative_to(self.base)}: {type(exc).__name__}") from None

    def meta(self, rtype: str, repo_id: str) -> dict:
        return self._read_json(self.require(rtype, repo_id) / "meta.json")

    def set_private(self, rtype: str, repo_id: str, private: bool) -> None:
        with self.lock:
            d = self.require(rtype, repo_id)
            meta = self._read_json(d / "meta.json")
            meta["private"] = private
            self._write_json(d / "meta.json", meta)

    def create(self, rtype: str, repo_id: str, private: bool, sdk: str | None) -> None:
        """Create a repo with its initial commit; HubError 409 when it exists."""
        with self.lock:
            d = self.repo_dir(rtype, repo_id)
            if self.exists(rtype, repo_id):
                raise HubError(409, "You already created this repo")
            if d.exists():  # left half-made by a crash: nothing in it is reachable
                self._discard(d)
            # built aside, then renamed into place: a reader sees all of it or nothing
            tmp = self.temp_path(".repo")
            (tmp / "commits").mkdir(parents=True)
            self._write_json(tmp / "meta.json", {"private": private, "sdk": sdk, "created": _now()})
            attrs = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in LFS_SUFFIXES)
            files = {".gitattributes": self.put_blob(attrs, lfs=False)}
            sha = self._write_commit(tmp, None, files, "initial commit", "")
            self._write_json(tmp / "refs.json", {"branches": {"main": sha}, "tags": {}})
            d.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, d)

    def delete(self, rtype: str, repo_id: str) -> None:
        with self.lock:
            self._discard(self.require(rtype, repo_id))
            with contextlib.suppress(OSError):  # the namespace folder, once empty
                self.repo_dir(rtype, repo_id).parent.rmdir()

    def _discard(self, d: Path) -> None:
        """Move `d` (inside the root) to trash/ at once, then remove it."""
        d = names.confined(self.path("repos"), str(d.relative_to(self.path("repos"))))
        gone = self.path("trash", uuid.uuid4().hex)
        os.replace(d, gone)
        shutil.rmtree(gone, ignore_errors=True)

    def list_repos(self, rtype: str) -> list[str]:
        out = []
        tdir = self.path("repos", rtype)
        if not tdir.is_dir():
            return out
        for ns in sorted(tdir.iterdir()):
            if not ns.is_dir() or ns.is_symlink():
                continue
            try:
                entries = sorted(ns.iterdir())
            except FileNotFoundError:  # its last repo was deleted meanwhile
                continue
            for d in entries:
                if d.is_symlink():
                    continue
                try:
                    rid = names.repo_id(ns.name, d.name)
                except BadName:
                    continue
                if (d / "refs.json").is_file():
                    out.append(rid)
        return out

    # -- blobs and commits ---------------------------------------------------------------------
    def object_path(self, sha256: str) -> Path:
        return self.path("objects", names.lfs_oid(sha256))

    def has_object(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def put_blob(self, data: bytes, lfs: bool) -> dict:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.object_path(sha256)
        if not path.is_file():
            tmp = self.temp_path(".blob")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return {"sha256": sha256, "size": len(data), "oid": sha256 if lfs else git_blob_oid(data), "lfs": lfs}

    def blob_path(self, entry: dict) -> Path:
        try:
            path = self.object_path(entry["sha256"])
        except (BadName, KeyError, TypeError):
            raise HubError(500, "the hub's store holds an invalid entry") from None
        if not path.is_file():
            raise HubError(500, "the hub's store is missing an object")
        return path

    def read_blob(self, entry: dict, limit: int) -> bytes | None:
        """The entry's bytes, or None when it is larger than `limit`."""
        if entry["size"] > limit:
            return None
        return self.blob_path(entry).read_bytes()

    def _write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_name(path.name + f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)

    def _write_commit(self, d: Path, parent: str | None, files: dict, title: str, description: str) -> str:
        body = {"parent": parent, "files": dict(sorted(files.items())), "title": title, "message": description, "date": _now()}
        raw = json.dumps(body, sort_keys=True).encode()
        sha = hashlib.sha1(raw).hexdigest()
        (d / "commits" / f"{sha}.json").write_bytes(raw)
        return sha

    def load_commit(self, rtype: str, repo_id: str, sha: str) -> dict:
        d = self.repo_dir(rtype, repo_id)
        return self._read_json(names.confined(d, "commits", names.commit_sha(sha) + ".json"))

    def refs(self, d: Path) -> dict:
        return self._read_json(d / "refs.json")

    def create_ref(self, rtype: str, repo_id: str, kind: str, name: str, start: str) -> None:
        """Point a new tag or branch (`kind` is "tags" or "branches") at `start`."""
        name = names.new_ref_name(name)
        with self.lock:
            sha, _ = self.resolve(rtype, repo_id, start)
            d = self.repo_dir(rtype, repo_id)
            refs = self.refs(d)
            if name in refs[kind]:
                raise HubError(409, f"{_REF_LABEL[kind]} {name} already exists")
            refs[kind][name] = sha
            self._write_json(d / "refs.json", refs)

    def delete_ref(self, rtype: str, repo_id: str, kind: str, name: str) -> None:
        names.revision(name)
        with self.lock:
            d = self.require(rtype, repo_id)
            refs = self.refs(d)
            if kind == "branches" and name == "main":
                raise HubError(403, "The default branch cannot be deleted")
            if refs[kind].pop(name, None) is None:
                raise HubError(404, f"{_REF_LABEL[kind]} not found", "RevisionNotFound")
            self._write_json(d / "refs.json", refs)

    def resolve(self, rtype: str, repo_id: str, rev: str) -> tuple[str, dict]:
        """(commit sha, commit) for a branch, tag or commit id; HubError 404 otherwise."""
        d = self.require(rtype, repo_id)
        names.revision(rev)
        refs = self.refs(d)
        sha = refs["branches"].get(rev) or refs["tags"].get(rev)
        if sha is None and names.is_commit_sha(rev) and names.confined(d, "commits", f"{rev}.json").is_file():
            sha = rev
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha, self.load_commit(rtype, repo_id, sha)

    def history(self, rtype: str, repo_id: str, sha: str) -> Iterator[tuple[str, dict]]:
        seen = set()
        while sha and sha not in seen:
            seen.add(sha)
            commit = self.load_commit(rtype, repo_id, sha)
            yield sha, commit
            sha = commit.get("parent")

    def card_data(self, rtype: str, repo_id: str, sha: str, commit: dict) -> dict | None:
        """The README's front matter at commit `sha` (None without README or valid YAML); cached."""
        from .pages import split_front_matter

        key = (rtype, repo_id, sha)
        with self._cards_lock:
            if key in self._cards:
                self._cards.move_to_end(key)
                return self._cards[key]
        entry = commit["files"].get("README.md")
        data = None
        if entry is not None:
            raw = self.read_blob(entry, 4 * MiB)
            if raw is not None:
                data, _, _ = split_front_matter(raw.decode("utf-8", "replace"))
        with self._cards_lock:
            self._cards[key] = data
            while len(self._cards) > 512:
                self._cards.popitem(last=False)
        return data

    def commit(self, rtype: str, repo_id: str, rev: str, lines: Iterable[bytes], create_pr: bool) -> dict:
        """Apply an NDJSON commit payload (huggingface_hub's `_prepare_commit_payload`) to branch
        `rev`. Returns {"commitOid", and "pullRequestUrl" (a path) with create_pr}."""
        names.revision(rev)
        self.require(rtype, repo_id)
        header, ops = self._parse_commit(lines)
        with self.lock:
            d = self.require(rtype, repo_id)
            head, current = self.resolve(rtype, repo_id, rev)
            refs = self.refs(d)
            if not create_pr and rev not in refs["branches"]:
                raise HubError(400, f"Cannot commit to {rev}: not a branch")
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(current["files"])
            for kind, path, entry in ops:
                if kind == "add":
                    if entry["lfs"] and not self.has_object(entry["sha256"]):
                        raise HubError(422, f"LFS object {entry['sha256']} for {path} was never uploaded")
                    if entry["lfs"]:
                        size = self.object_path(entry["sha256"]).stat().st_size
                        if entry["size"] not in (None, size):
                            raise HubError(422, f"LFS object {entry['sha256']} for {path} has {size} bytes, not {entry['size']}")
                        entry = {**entry, "size": size}
                    files[path] = entry
                elif kind == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
                    del files[path]
                else:
                    prefix = path.rstrip("/") + "/"
                    gone = [p for p in files if p.startswith(prefix)]
                    if not gone:
                        raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
            clash = _file_dir_clash(files)
            if clash:
                raise HubError(400, f"{clash} would be both a file and a folder")
            sha = self._write_commit(d, head, files, header.get("summary") or "update", header.get("description") or "")
            result = {"commitOid": sha}
            if create_pr:
                # pull requests and discussions share one numbering, as on the Hub
                n = self._add_discussion(d, rtype, repo_id, header.get("summary") or "update", header.get("description") or "", pull_request=True, commit=(sha, header.get("summary") or "update"))
                refs["branches"][f"refs/pr/{n}"] = sha
                result["pullRequestUrl"] = f"/{URL_PREFIX[rtype]}{repo_id}/discussions/{n}"
            else:
                refs["branches"][rev] = sha
            self._write_json(d / "refs.json", refs)
            return result

    # -- discussions and pull requests ----------------------------------------------------------
    def discussions(self, rtype: str, repo_id: str) -> list[dict]:
        """Every discussion and pull request of a repo, oldest first, in the Hub's JSON shape."""
        f = self.require(rtype, repo_id) / "discussions.json"
        return self._read_json(f) if f.is_file() else []

    def open_discussion(self, rtype: str, repo_id: str, title: Any, description: Any, pull_request: Any) -> int:
        """A new discussion (or an empty pull request); returns its number."""
        if not isinstance(title, str) or not 3 <= len(title.strip()) <= 200:
            raise HubError(400, "title must be a string of 3 to 200 characters")
        if not isinstance(description, str) or len(description) > 65536:
            raise HubError(400, "description must be a string of at most 65536 characters")
        with self.lock:
            d = self.require(rtype, repo_id)
            return self._add_discussion(d, rtype, repo_id, title.strip(), description, pull_request=pull_request is True)

    def _add_discussion(self, d: Path, rtype: str, repo_id: str, title: str, description: str, *, pull_request: bool, commit: tuple[str, str] | None = None) -> int:
        items = self._read_json(d / "discussions.json") if (d / "discussions.json").is_file() else []
        refs = self.refs(d)
        n = max([x["num"] for x in items] + [int(b.rsplit("/", 1)[1]) for b in refs["branches"] if b.startswith("refs/pr/")] + [0]) + 1
        now, author = _now(), {"name": "local-user"}
        events = [{"id": uuid.uuid4().hex[:24], "type": "comment", "createdAt": now, "author": author, "data": {"edited": False, "hidden": False, "latest": {"raw": description}}}]
        if commit:
            events.append({"id": uuid.uuid4().hex[:24], "type": "commit", "createdAt": now, "author": author, "data": {"oid": commit[0], "subject": commit[1]}})
        item = {"num": n, "title": title, "status": "open", "isPullRequest": pull_request, "createdAt": now, "author": author, "repo": {"name": repo_id, "type": rtype}, "events": events}
        if pull_request:
            item.update(changes={"base": "refs/heads/main"}, filesWithConflicts=[])
        self._write_json(d / "discussions.json", items + [item])
        return n

    def _parse_commit(self, lines: Iterable[bytes]) -> tuple[dict, list]:
        """Validate every line; regular files are stored as blobs as they come (content-addressed,
        so a commit refused later leaves only unreferenced blobs, swept in time)."""
        header: dict = {}
        ops: list[tuple[str, str, dict | None]] = []
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except (ValueError, RecursionError):
                raise HubError(400, f"commit line {n} is not JSON") from None
            if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
                raise HubError(400, f"commit line {n} must be an object with a 'value' object")
            key, value = line.get("key"), line["value"]
            if key == "header":
                for field in ("summary", "description"):
                    if not isinstance(value.get(field, ""), (str, type(None))):
                        raise HubError(400, f"commit header: {field} must be a string")
                if value.get("parentCommit") is not None:
                    names.commit_sha(value["parentCommit"])
                header = value
            elif key == "file":
                path = names.repo_path(value.get("path"))
                content, encoding = value.get("content"), value.get("encoding")
                if not isinstance(content, str):
                    raise HubError(400, f"commit line {n}: content must be a string")
                if encoding == "base64":
                    try:
                        data = base64.b64decode(content, validate=True)
                    except (binascii.Error, ValueError):
                        raise HubError(400, f"commit line {n}: content is not base64") from None
                elif encoding in (None, "utf-8"):
                    data = content.encode("utf-8", "surrogatepass")
                else:
                    raise HubError(400, f"commit line {n}: unknown encoding")
                ops.append(("add", path, self.put_blob(data, lfs=False)))
            elif key == "lfsFile":
                path = names.repo_path(value.get("path"))
                oid = names.lfs_oid(value.get("oid"))
                if value.get("algo", "sha256") != "sha256":
                    raise HubError(400, f"commit line {n}: only sha256 LFS objects")
                size = value.get("size")
                if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                    raise HubError(400, f"commit line {n}: size must be a non-negative integer")
                ops.append(("add", path, {"sha256": oid, "size": size, "oid": oid, "lfs": True}))
            elif key in ("deletedFile", "deletedFolder"):
                raw_path = value.get("path")
                path = names.repo_path(raw_path.rstrip("/") if isinstance(raw_path, str) and key == "deletedFolder" else raw_path)
                ops.append((key, path, None))
            else:
                raise HubError(400, f"commit line {n}: unknown key")
        return header, ops

    # -- sweeping ------------------------------------------------------------------------------
    def sweep(self, *, incoming_age: float = 3600, object_age: float = 86400) -> dict:
        """Remove what uploads left behind: files in incoming/ untouched for `incoming_age`
        seconds, trash/ leftovers, and objects no commit of any repo references, untouched for
        `object_age` seconds. Returns the counts removed."""
        now = time.time()
        counts = {"incoming": 0, "trash": 0, "objects": 0}
        for p in self.path("incoming").iterdir():
            with contextlib.suppress(OSError):
                if now - p.lstat().st_mtime > incoming_age:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink()
                    counts["incoming"] += 1
        with self.lock:
            for p in self.path("trash").iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
                counts["trash"] += 1
            referenced = set()
            for rtype in REPO_TYPES:
                for rid in self.list_repos(rtype):
                    for c in (self.repo_dir(rtype, rid) / "commits").glob("*.json"):
                        if c.is_symlink() or not names.is_commit_sha(c.stem):
                            continue
                        with contextlib.suppress(HubError, OSError, AttributeError):
                            referenced.update(e.get("sha256") for e in self._read_json(c).get("files", {}).values())
            for p in self.path("objects").iterdir():
                with contextlib.suppress(OSError):
                    if p.name not in referenced and now - p.lstat().st_mtime > object_age:
                        p.unlink()
                        counts["objects"] += 1
        return counts


def _file_dir_clash(files: dict) -> str | None:
    dirs = set()
    for p in files:
        parts = p.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    clash = dirs & files.keys()
    return min(clash) if clash else None


def tree_entries(commit: dict, sub: str, recursive: bool) -> list[dict] | None:
    """The tree listing as the Hub returns it (directories first); None when `sub` does not exist."""
    prefix = sub + "/" if sub else ""
    entries, dirs = [], set()
    for p, e in commit["files"].items():
        if not p.startswith(prefix):
            continue
        parts = p[len(prefix):].split("/")
        for i in range(1, len(parts)):
            if recursive or i == 1:
                dirs.add(prefix + "/".join(parts[:i]))
        if recursive or len(parts) == 1:
            item = {"type": "file", "path": p, "size": e["size"], "oid": lfs_pointer_oid(e["sha256"], e["size"]) if e["lfs"] else e["oid"]}
            if e["lfs"]:
                item["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": 134}
            entries.append(item)
    if sub and not entries and not dirs:
        return None
    return [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(dirs)] + sorted(entries, key=lambda x: x["path"])


def repo_summary(store: Store, rtype: str, repo_id: str, rev: str = "main", *, blobs: bool = False) -> dict:
    """The Hub's repo info object (model_info, dataset_info, space_info, and list items)."""
    sha, commit = store.resolve(rtype, repo_id, rev)
    meta = store.meta(rtype, repo_id)
    card = store.card_data(rtype, repo_id, sha, commit) or {}
    siblings = []
    for p, e in sorted(commit["files"].items()):
        item: dict[str, Any] = {"rfilename": p}
        if blobs:
            item.update(size=e["size"], blobId=lfs_pointer_oid(e["sha256"], e["size"]) if e["lfs"] else e["oid"])
            if e["lfs"]:
                item["lfs"] = {"size": e["size"], "sha256": e["sha256"], "pointerSize": 134}
        siblings.append(item)
    raw_tags = card.get("tags")
    tags = [str(t) for t in raw_tags if isinstance(t, (str, int, float))] if isinstance(raw_tags, list) else []
    for key in ("library_name", "pipeline_tag"):
        if isinstance(card.get(key), str) and card[key] not in tags:
            tags.append(card[key])
    if isinstance(card.get("license"), str):
        tags.append(f"license:{card['license']}")
    ns = repo_id.split("/")[0]
    info = {
        "id": repo_id, "_id": hashlib.sha1(f"{rtype}/{repo_id}".encode()).hexdigest()[:24], "author": ns, "sha": sha,
        "private": bool(meta.get("private")), "disabled": False, "gated": False, "lastModified": commit["date"],
        "createdAt": meta.get("created"), "siblings": siblings, "tags": tags, "cardData": card or None,
        "downloads": 0, "likes": 0,
    }
    if rtype == "model":
        info["modelId"] = repo_id
        info["library_name"] = card.get("library_name") if isinstance(card.get("library_name"), str) else None
        info["pipeline_tag"] = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else None
        if isinstance(card.get("model-index"), list):
            info["model-index"] = card["model-index"]
    if rtype == "space":
        info["sdk"] = meta.get("sdk")
        info["runtime"] = {"stage": "NO_APP_FILE" if "app.py" not in commit["files"] else "STOPPED", "hardware": {"current": None, "requested": None}}
    return info


# -- HTTP -----------------------------------------------------------------------------------------


class HubConfig:
    """What one server's handlers share."""

    def __init__(self, store: Store, token: str | None, *, max_json: int, max_commit: int, max_upload: int, run_jobs: bool = False):
        from .jobs import Jobs

        self.store, self.token = store, token or None
        self.jobs = Jobs(store.root, store.path, run=run_jobs)
        self.max_json, self.max_commit, self.max_upload = max_json, max_commit, max_upload
        self.secret = secrets.token_bytes(32)  # signs LFS upload URLs and page sessions

    def sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def session_value(self) -> str:
        return self.sign(f"session:{self.token}")


class Handler(BaseHTTPRequestHandler):
    server_version = "hubkit-local-hub/2"
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment, sent at once: otherwise Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every request.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    timeout = 120  # a silent client does not hold a thread forever

    # set on the class by LocalHub
    hub: HubConfig
    log_requests: list | None
    faults: dict | None = None  # for tests: {"status": {"METHOD path-regex": [codes]}, "exit_on": "METHOD path-regex"}

    @property
    def store(self) -> Store:
        return self.hub.store

    @property
    def token(self) -> str | None:
        return self.hub.token

    def log_message(self, fmt, *args):  # quiet; requests are recorded in log_requests instead
        pass

    # open keep-alive connections, so that stopping the server really ends them
    def setup(self):
        super().setup()
        self.server.open_connections.add(self.connection)

    def finish(self):
        self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # -- request bodies ----------------------------------------------------------------------
    def _body_start(self) -> None:
        """Work out how the body is framed; refuse ambiguous framing (request smuggling)."""
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        self._chunked, self._length, self._body_done = False, 0, True
        if te:
            if len(te) != 1 or te[0].strip().lower() != "chunked" or cl:
                self._body_done = False
                raise HubError(400, "Unsupported Transfer-Encoding")
            self._chunked, self._body_done = True, False
        elif cl:
            if len(set(v.strip() for v in cl)) != 1 or not re.fullmatch(r"[0-9]{1,18}", cl[0].strip()):
                self._body_done = False
                raise HubError(400, "Invalid Content-Length")
            self._length = int(cl[0])
            self._body_done = self._length == 0

    def _body_chunks(self, limit: int) -> Iterator[bytes]:
        """The request body, streamed, at most `limit` bytes (HubError 413 beyond)."""
        if self._body_done:
            return
        if not self._chunked:
            if self._length > limit:
                raise HubError(413, f"Request body too large: {self._length} bytes, the limit is {limit}")
            while self._length:  # counted down as read, so a later drain reads only the rest
                chunk = self.rfile.read(min(self._length, MiB))
                if not chunk:
                    raise HubError(400, "Request body ended early")
                self._length -= len(chunk)
                yield chunk
            self._body_done = True
            return
        total = 0
        while True:
            line = self.rfile.readline(1026)
            m = re.fullmatch(rb"([0-9a-fA-F]{1,15})(;[^\r\n]*)?\r?\n", line)
            if not m:
                raise HubError(400, "Invalid chunked body")
            size = int(m.group(1), 16)
            if size == 0:
                for _ in range(64):  # trailer lines, up to the empty one
                    if self.rfile.readline(8194) in (b"\r\n", b"\n"):
                        self._body_done = True
                        return
                raise HubError(400, "Invalid chunked body trailer")
            total += size
            if total > limit:
                raise HubError(413, f"Request body too large: the limit is {limit} bytes")
            left = size
            while left:
                chunk = self.rfile.read(min(left, MiB))
                if not chunk:
                    raise HubError(400, "Request body ended early")
                left -= len(chunk)
                yield chunk
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise HubError(400, "Invalid chunked body")

    def _read_body(self, limit: int | None = None) -> bytes:
        return b"".join(self._body_chunks(self.hub.max_json if limit is None else limit))

    def _read_json(self) -> dict:
        raw = self._read_body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise HubError(400, "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object")
        return data

    def _read_form(self) -> dict[str, list[str]]:
        raw = self._read_body()
        try:
            return parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10_000, errors="strict")
        except ValueError:
            raise HubError(400, "Request body is not a valid form") from None

    def _spool(self, limit: int) -> Path:
        """The body written to a file under incoming/ (the caller removes it)."""
        tmp = self.store.temp_path(".body")
        try:
            with tmp.open("wb") as fh:
                for chunk in self._body_chunks(limit):
                    fh.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _settle_body(self) -> None:
        """After answering: drain a small unread body so the connection stays usable, or close."""
        if getattr(self, "_body_done", True):
            return
        if not self._chunked and self._length <= DRAIN_LIMIT:
            with contextlib.suppress(HubError, OSError):
                for _ in self._body_chunks(DRAIN_LIMIT):
                    pass
            if self._body_done:
                return
        self.close_connection = True

    def _will_close(self) -> bool:
        if getattr(self, "_body_done", True):
            return False
        return self._chunked or self._length > DRAIN_LIMIT

    # -- responses ---------------------------------------------------------------------------
    def _send(self, status: int, payload: Any = None, headers: dict | None = None, raw: bytes | None = None, head: bool = False, content_type: str | None = None) -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        headers = dict(headers or {})
        self.send_response(status)
        if content_type or (raw is None and payload is not None):
            self.send_header("Content-Type", content_type or "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in headers.items():
            self.send_header(k, str(v))
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        if self._will_close():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head and data:
            self.wfile.write(data)

    def _error(self, e: HubError, head: bool = False, html: bool = False) -> None:
        headers = dict(e.headers)
        headers["X-Error-Message"] = e.message.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")[:500]
        if e.code:
            headers["X-Error-Code"] = e.code
        if html:
            from .pages import error_page

            return self._send(e.status, raw=error_page(e.status, e.message, self.token is not None).encode(), headers={**headers, **PAGE_HEADERS}, head=head, content_type="text/html; charset=utf-8")
        self._send(e.status, None if head else {"error": e.message}, headers, head=head)

    # -- auth --------------------------------------------------------------------------------
    def _bearer_ok(self) -> bool:
        auth = (self.headers.get("Authorization") or "").encode("latin-1", "replace")
        return hmac.compare_digest(auth, f"Bearer {self.token}".encode())

    def _cookie_ok(self) -> bool:
        want = f"{SESSION_COOKIE}={self.hub.session_value()}".encode()
        for part in (self.headers.get("Cookie") or "").split(";"):
            if hmac.compare_digest(part.strip().encode("latin-1", "replace"), want):
                return True
        return False

    def _authorized(self, method: str) -> bool:
        if not self.token:
            return True
        return self._bearer_ok() or (method in ("GET", "HEAD") and self._cookie_ok())

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        head = method == "HEAD"
        self._chunked, self._length, self._body_done = False, 0, True
        url = urlsplit(self.path)
        if self.log_requests is not None:
            self.log_requests.append(f"{method} {re.sub(r'/[0-9a-f]{64}', '/<oid>', url.path)}")
        html = False
        try:
            self._body_start()
            if self.faults:
                line = f"{method} {unquote(url.path)}"
                if self.faults.get("exit_on") and re.match(self.faults["exit_on"], line):
                    os._exit(17)  # the server dies mid-request, as a crash or a kill would
                for pattern, codes in (self.faults.get("status") or {}).items():
                    if codes and re.match(pattern, line):
                        code = codes.pop(0)
                        raise HubError(code, f"injected fault {code}")
            if not url.path.startswith("/"):
                raise HubError(400, "Invalid request target")
            try:
                segs = [unquote(s, errors="strict") for s in url.path.split("/")[1:]]
                query = parse_qs(url.query, keep_blank_values=True, max_num_fields=100, errors="strict")
            except (UnicodeDecodeError, ValueError):
                raise HubError(400, "Invalid URL encoding") from None
            if len(segs) > 1 and segs[-1] == "":
                segs.pop()
            if segs == [""]:
                segs = []
            html = method in ("GET", "HEAD") and _is_page(segs)
            exempt = segs[:1] == ["lfs-upload"] or segs == ["login"] or segs == ["logout"]
            if not exempt and not self._authorized(method):
                if html:
                    raise HubError(401, "This hub needs its token: sign in to see its pages.")
                raise HubError(401, "Invalid credentials in Authorization header" if self.headers.get("Authorization") else "Authorization header is required")
            self._route(method, segs, query)
        except HubError as e:
            self._error(e, head=head, html=html)
        except (BadName, OutsideRoot) as e:
            if isinstance(e, OutsideRoot):
                print(f"hubkit hub: refused a path outside the root: {e}", file=sys.stderr)
            self._error(HubError(400, str(e)), head=head, html=html)
        except (ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True
            return
        except Exception:  # a bug: the client gets a bare 500, the operator the traceback
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._error(HubError(500, "Internal error"), head=head, html=html)
            return
        with contextlib.suppress(OSError):
            self._settle_body()

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    # -- routes ------------------------------------------------------------------------------
    def _route(self, method: str, segs: list[str], query: dict) -> None:
        if segs[:1] == ["api"]:
            return self._api(method, segs[1:], query)
        if len(segs) == 2 and segs[0] in ("lfs-upload", "lfs-verify"):
            return self._lfs_transfer(method, segs[0], segs[1], query)
        if segs in (["login"], ["logout"]):
            return self._login(method, segs[0], query)
        rtype, rest = "model", segs
        if segs and segs[0] in ("datasets", "spaces"):
            rtype, rest = TYPE_SEGMENT[segs[0]], segs[1:]
        if len(rest) == 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            if method != "POST":
                raise HubError(405, "Method not allowed")
            return self._lfs_batch(rtype, names.repo_id(rest[0], rest[1][: -len(".git")]))
        if len(rest) >= 5 and rest[2] == "resolve":
            if method not in ("GET", "HEAD"):
                raise HubError(405, "Method not allowed")
            return self._resolve(method, rtype, names.repo_id(rest[0], rest[1]), rest[3], "/".join(rest[4:]))
        if method in ("GET", "HEAD") and _is_page(segs):
            from .pages import page

            status, body = page(self.store, segs, query, base=self.base)
            return self._send(status, raw=body.encode(), headers=PAGE_HEADERS, head=method == "HEAD", content_type="text/html; charset=utf-8")
        raise HubError(404, f"no route for {method} {'/'.join(segs)[:200]}")

    def _api(self, method: str, segs: list[str], query: dict) -> None:
        s = self.store
        if segs == ["whoami-v2"] and method == "GET":
            return self._send(200, {"type": "user", "name": "local-user", "fullname": "Local user", "orgs": [], "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if segs == ["repos", "create"] and method == "POST":
            body = self._read_json()
            rtype = body.get("type") or "model"
            if rtype not in REPO_TYPES:
                raise HubError(400, "Invalid repo type")
            repo_id = names.new_repo_id(body.get("organization") or "local-user", body.get("name"))
            sdk = body.get("sdk")
            if rtype == "space" and (not isinstance(sdk, str) or sdk not in ("gradio", "docker", "static", "streamlit")):
                raise HubError(400, "Missing or invalid sdk for a Space")
            url = f"{self.base}/{URL_PREFIX[rtype]}{repo_id}"
            try:
                s.create(rtype, repo_id, body.get("private") is True or body.get("visibility") == "private", sdk if rtype == "space" else None)
            except HubError as e:
                if e.status == 409:  # the Hub's answer; huggingface_hub's exist_ok reads its url
                    return self._send(409, {"error": "You already created this repo", "url": url}, {"X-Error-Message": "You already created this repo"})
                raise
            return self._send(200, {"url": url, "name": repo_id, "id": repo_id})
        if segs == ["repos", "delete"] and method == "DELETE":
            body = self._read_json()
            rtype = body.get("type") or "model"
            if rtype not in REPO_TYPES:
                raise HubError(400, "Invalid repo type")
            s.delete(rtype, names.repo_id(body.get("organization") or "local-user", body.get("name")))
            return self._send(200, {})
        if segs[:1] == ["jobs"]:
            return self._jobs(method, segs[1:], query)
        if segs == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(self._read_json())
        if len(segs) == 1 and segs[0] in TYPE_SEGMENT and method == "GET":
            return self._list_repos(TYPE_SEGMENT[segs[0]], query)
        if len(segs) >= 3 and segs[0] in TYPE_SEGMENT:
            return self._repo_api(method, TYPE_SEGMENT[segs[0]], names.repo_id(segs[1], segs[2]), segs[3:], query)
        raise HubError(404, f"no route for {method} /api/{'/'.join(segs)[:200]}")

    def _repo_api(self, method: str, rtype: str, repo_id: str, rest: list[str], query: dict) -> None:
        s = self.store
        op = rest[0] if rest else ""
        if method == "GET" and (not rest or op == "revision"):
            if op == "revision" and len(rest) < 2:
                raise HubError(404, "no revision given", "RevisionNotFound")
            rev = "/".join(rest[1:]) if rest else "main"
            blobs = _flag(query, "blobs") or _flag(query, "files_metadata")
            return self._send(200, repo_summary(s, rtype, repo_id, rev, blobs=blobs))
        if op == "tree" and method == "GET" and len(rest) >= 2:
            sub = names.repo_path("/".join(rest[2:]), allow_empty=True)
            _, commit = s.resolve(rtype, repo_id, rest[1])
            out = tree_entries(commit, sub, _flag(query, "recursive"))
            if out is None:
                raise HubError(404, f"Entry not found: {sub}", "EntryNotFound")
            return self._send(200, out)
        if op == "paths-info" and method == "POST" and len(rest) == 2:
            return self._paths_info(rtype, repo_id, rest[1])
        if op == "preupload" and method == "POST" and len(rest) == 2:
            return self._preupload(rtype, repo_id, rest[1], self._read_json())
        if op == "commit" and method == "POST" and len(rest) == 2:
            s.require(rtype, repo_id)
            create_pr = _flag(query, "create_pr")
            body = self._spool(self.hub.max_commit)
            try:
                with body.open("rb") as fh:
                    res = s.commit(rtype, repo_id, rest[1], fh, create_pr)
            finally:
                body.unlink(missing_ok=True)
            res["commitUrl"] = f"{self.base}/{URL_PREFIX[rtype]}{repo_id}/commit/{res['commitOid']}"
            if "pullRequestUrl" in res:
                res["pullRequestUrl"] = self.base + res["pullRequestUrl"]
            return self._send(200, res)
        if op in ("tag", "branch") and method in ("POST", "DELETE") and len(rest) == 2:
            kind = "tags" if op == "tag" else "branches"
            if method == "POST":
                body = self._read_json()
                if kind == "tags":
                    name, start = body.get("tag"), rest[1]
                else:
                    name, start = rest[1], body.get("startingPoint") or "main"
                if not isinstance(start, str):
                    raise HubError(400, "startingPoint must be a string")
                s.create_ref(rtype, repo_id, kind, name, start)
            else:
                s.delete_ref(rtype, repo_id, kind, rest[1])
            return self._send(200, {})
        if method == "GET" and rest == ["refs"]:
            refs = s.refs(s.require(rtype, repo_id))

            def fmt(kind, items):
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(items.items())]

            out = {"branches": fmt("heads", {k: v for k, v in refs["branches"].items() if not k.startswith("refs/pr/")}), "tags": fmt("tags", refs["tags"]), "converts": []}
            if _flag(query, "include_prs"):
                out["pullRequests"] = [{"name": k, "ref": k, "targetCommit": v} for k, v in sorted(refs["branches"].items()) if k.startswith("refs/pr/")]
            return self._send(200, out)
        if op == "commits" and method == "GET" and len(rest) == 2:
            sha, _ = s.resolve(rtype, repo_id, rest[1])
            out = [{"id": c_sha, "title": c["title"], "message": c["message"], "date": c["date"], "authors": [{"user": "local-user"}]} for c_sha, c in s.history(rtype, repo_id, sha)]
            return self._send(200, out)
        if op == "discussions" and len(rest) <= 2:
            if method == "POST" and len(rest) == 1:
                body = self._read_json()
                n = s.open_discussion(rtype, repo_id, body.get("title"), body.get("description") or "", body.get("pullRequest"))
                return self._send(200, {"num": n, "url": f"{self.base}/{URL_PREFIX[rtype]}{repo_id}/discussions/{n}"})
            if method == "GET" and len(rest) == 1:
                items = [{k: v for k, v in x.items() if k not in ("events", "changes", "filesWithConflicts")} for x in reversed(s.discussions(rtype, repo_id))]
                try:
                    page = int((query.get("p") or ["0"])[0])
                except ValueError:
                    raise HubError(400, "p must be an integer") from None
                start = max(page, 0) * 50
                return self._send(200, {"discussions": items[start:start + 50], "count": len(items), "start": start, "numClosedDiscussions": 0})
            if method == "GET" and len(rest) == 2:
                for x in s.discussions(rtype, repo_id):
                    if str(x["num"]) == rest[1]:
                        return self._send(200, x)
                raise HubError(404, f"Discussion {rest[1][:20]} not found")
        if op == "xet-write-token":
            raise HubError(501, "This local hub does not implement Xet uploads: set HF_HUB_DISABLE_XET=1 before importing huggingface_hub")
        if method == "PUT" and rest == ["settings"]:
            body = self._read_json()
            if "private" in body:
                if not isinstance(body["private"], bool):
                    raise HubError(400, "private must be true or false")
                s.set_private(rtype, repo_id, body["private"])
            else:
                s.require(rtype, repo_id)
            return self._send(200, {})
        raise HubError(404, f"no route for {method} /api/{rtype}s/{repo_id}/{'/'.join(rest)[:200]}")

    def _list_repos(self, rtype: str, query: dict) -> None:
        """list_models / list_datasets / list_spaces: author, search, filter (tags), sort, limit."""
        def one(key):
            vals = query.get(key) or []
            return vals[0] if vals else None

        author, search = one("author"), (one("search") or "").lower()
        wanted_tags = [t for v in query.get("filter", []) for t in v.split(",") if t]
        try:
            limit = int(one("limit")) if one("limit") else None
            offset = int(one("cursor") or 0)
        except ValueError:
            raise HubError(400, "limit and cursor must be integers") from None
        if (limit is not None and limit < 1) or offset < 0:
            raise HubError(400, "limit and cursor must be positive")
        full = _flag(query, "full") or _flag(query, "cardData") or bool(query.get("expand"))
        items = []
        for rid in self.store.list_repos(rtype):
            if author and rid.split("/")[0] != author:
                continue
            if search and search not in rid.lower():
                continue
            try:
                info = repo_summary(self.store, rtype, rid)
            except HubError:
                continue  # deleted or damaged meanwhile: not listed
            if wanted_tags and not all(t in info["tags"] or t == info.get("pipeline_tag") for t in wanted_tags):
                continue
            if not full:
                info.pop("siblings", None)
                info.pop("cardData", None)
            items.append(info)
        sort = one("sort") or ""
        if sort in ("lastModified", "last_modified", "createdAt", "created_at"):
            key = "lastModified" if sort.startswith("last") else "createdAt"
            items.sort(key=lambda i: i.get(key) or "", reverse=one("direction") != "1")
        page_size = min(limit or 1000, 1000)
        page, headers = items[offset: offset + page_size], {}
        if offset + page_size < len(items) and (limit is None or limit > page_size):
            q = "&".join(f"{quote(k)}={quote(v)}" for k, vs in query.items() if k != "cursor" for v in vs)
            headers["Link"] = f'<{self.base}/api/{rtype}s?{q}&cursor={offset + page_size}>; rel="next"'
        self._send(200, page, headers)

    def _paths_info(self, rtype: str, repo_id: str, rev: str) -> None:
        form = self._read_form()
        _, commit = self.store.resolve(rtype, repo_id, rev)
        out = []
        for p in form.get("paths", []):
            p = names.repo_path(p.strip("/"), allow_empty=False)
            e = commit["files"].get(p)
            if e is not None:
                item = {"type": "file", "path": p, "size": e["size"], "oid": lfs_pointer_oid(e["sha256"], e["size"]) if e["lfs"] else e["oid"]}
                if e["lfs"]:
                    item["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": 134}
                out.append(item)
            elif any(f.startswith(p + "/") for f in commit["files"]):
                out.append({"type": "directory", "path": p, "oid": hashlib.sha1(p.encode()).hexdigest()})
        self._send(200, out)

    def _preupload(self, rtype: str, repo_id: str, rev: str, body: dict) -> None:
        _, commit = self.store.resolve(rtype, repo_id, rev)
        files = body.get("files")
        if not isinstance(files, list):
            raise HubError(400, "files must be a list")
        out = []
        for f in files:
            if not isinstance(f, dict):
                raise HubError(400, "each file must be an object")
            path = names.repo_path(f.get("path"))
            size = f.get("size", 0)
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise HubError(400, "size must be a non-negative integer")
            sample_b64 = f.get("sample") or ""
            if not isinstance(sample_b64, str):
                raise HubError(400, "sample must be base64")
            try:
                sample = base64.b64decode(sample_b64, validate=True)
            except (binascii.Error, ValueError):
                raise HubError(400, "sample must be base64") from None
            lfs = size > 0 and (size > LFS_THRESHOLD or b"\0" in sample or path.lower().endswith(LFS_SUFFIXES))
            existing = commit["files"].get(path)
            oid = existing["oid"] if existing is not None and existing["lfs"] == lfs else None
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send(200, {"files": out})

    def _lfs_batch(self, rtype: str, repo_id: str) -> None:
        self.store.require(rtype, repo_id)
        body = self._read_json()
        if body.get("operation", "upload") != "upload":
            raise HubError(400, "Only the upload operation is supported")
        objects = body.get("objects")
        if not isinstance(objects, list):
            raise HubError(400, "objects must be a list")
        out = []
        expires = int(time.time()) + UPLOAD_URL_TTL
        for o in objects:
            if not isinstance(o, dict):
                raise HubError(400, "each object must be an object")
            oid = names.lfs_oid(o.get("oid"))
            size = o.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise HubError(400, "size must be a non-negative integer")
            item: dict[str, Any] = {"oid": oid, "size": size}
            if size > self.hub.max_upload:
                item["error"] = {"code": 422, "message": f"{size} bytes is over this hub's limit of {self.hub.max_upload} bytes per file"}
            elif self.store.has_object(oid):
                with contextlib.suppress(OSError):  # restarts its grace period before a sweep
                    os.utime(self.store.object_path(oid))
            else:
                sig = self.hub.sign(f"upload:{oid}:{size}:{expires}")
                item["actions"] = {
                    "upload": {"href": f"{self.base}/lfs-upload/{oid}?size={size}&expires={expires}&sig={sig}"},
                    "verify": {"href": f"{self.base}/lfs-verify/{oid}"},
                }
            out.append(item)
        self._send(200, {"transfer": "basic", "objects": out}, content_type="application/vnd.git-lfs+json")

    def _lfs_transfer(self, method: str, action: str, oid: str, query: dict) -> None:
        oid = names.lfs_oid(oid)
        if action == "lfs-upload" and method == "PUT":
            # huggingface_hub PUTs to the href without its token (as to a presigned S3 URL): the
            # URL itself carries the authorization, bound to this oid and size.
            try:
                size, expires, sig = int(query["size"][0]), int(query["expires"][0]), query["sig"][0]
            except (KeyError, IndexError, ValueError):
                raise HubError(403, "Upload URL is not signed") from None
            if not hmac.compare_digest(sig.encode("latin-1", "replace"), self.hub.sign(f"upload:{oid}:{size}:{expires}").encode()) or expires < time.time():
                raise HubError(403, "Upload URL is invalid or expired")
            if not self._chunked and self._length != size:
                raise HubError(400, f"Expected {size} bytes, got Content-Length {self._length}")
            tmp = self.store.temp_path(".lfs")
            h, n = hashlib.sha256(), 0
            try:
                with tmp.open("wb") as fh:
                    for chunk in self._body_chunks(min(size, self.hub.max_upload)):
                        fh.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
                if n != size or h.hexdigest() != oid:
                    raise HubError(400, f"sha256 or size mismatch for LFS object {oid}")
                os.replace(tmp, self.store.object_path(oid))
            finally:
                tmp.unlink(missing_ok=True)
            return self._send(200, {})
        if action == "lfs-verify" and method == "POST":
            body = self._read_json()
            path = self.store.object_path(oid)
            if not path.is_file():
                raise HubError(404, f"LFS object {oid} not found")
            if "size" in body and body["size"] != path.stat().st_size:
                raise HubError(422, f"LFS object {oid} has another size")
            return self._send(200, {})
        raise HubError(405, "Method not allowed")

    def _resolve(self, method: str, rtype: str, repo_id: str, rev: str, file: str) -> None:
        sha, commit = self.store.resolve(rtype, repo_id, rev)
        file = names.repo_path(file)
        e = commit["files"].get(file)
        if e is None:
            raise HubError(404, f"Entry not found: {file}", "EntryNotFound", {"X-Repo-Commit": sha})
        path = self.store.blob_path(e)
        size = e["size"]
        ctype = _CONTENT_TYPES.get(os.path.splitext(file)[1].lower(), "application/octet-stream")
        headers = {
            "X-Repo-Commit": sha, "ETag": f'"{e["oid"]}"', "Accept-Ranges": "bytes", "Content-Type": ctype,
            "Content-Security-Policy": "default-src 'none'; sandbox", "Cache-Control": "no-cache",
        }
        if e["lfs"]:
            headers.update({"X-Linked-Etag": f'"{e["sha256"]}"', "X-Linked-Size": str(size)})
        start, end, status = 0, size - 1, 200
        rng = (self.headers.get("Range") or "").strip()
        m = re.fullmatch(r"bytes=(\d{0,18})-(\d{0,18})", rng)
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # the last N bytes
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size or end < start:
                raise HubError(416, "Range not satisfiable", None, {"Content-Range": f"bytes */{size}", "X-Repo-Commit": sha})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("X-Content-Type-Options", "nosniff")
        if self._will_close():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if method == "GET" and length:
            with path.open("rb") as fh:
                fh.seek(start)
                left = length
                while left:
                    chunk = fh.read(min(left, MiB))
                    if not chunk:
                        raise ConnectionError("object shorter than recorded")
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _jobs(self, method: str, segs: list[str], query: dict) -> None:
        """The Jobs API (hubkit.hub.jobs): run, list, inspect, cancel, and the log stream."""
        from .jobs import JobError, sse

        jobs = self.hub.jobs
        body = self._read_json() if len(segs) == 1 and method == "POST" else None
        if jobs.received is not None:  # a recording hub (tests): each request as the client sent it
            jobs.received.append({
                "method": method, "path": "/api/jobs/" + "/".join(segs), "query": query,
                "authorization": self.headers.get("Authorization"), "body": body,
            })  # fmt: skip
        try:
            if len(segs) == 1 and method == "POST":
                return self._send(200, jobs.create(segs[0], body, owner="local-user"))
            if len(segs) == 1 and method == "GET":
                return self._send(200, jobs.list(segs[0]))
            if len(segs) == 2 and method == "GET":
                return self._send(200, jobs.get(segs[0], segs[1]))
            if len(segs) == 3 and segs[2] == "cancel" and method == "POST":
                jobs.cancel(segs[0], segs[1])
                return self._send(200, {})
            if len(segs) == 3 and segs[2] == "logs" and method == "GET":
                raw_tail = (query.get("tail") or [""])[0]
                tail = int(raw_tail) if raw_tail.isdigit() else None
                return self._send(200, raw=sse(jobs.logs(segs[0], segs[1], tail)), content_type="text/event-stream", headers={"Cache-Control": "no-store"})
        except JobError as e:
            raise HubError(e.status, e.message, "JobNotFound" if e.status == 404 else None) from None
        raise HubError(404, f"no route for {method} /api/jobs/{'/'.join(segs)[:200]}")

    def _validate_yaml(self, body: dict) -> None:
        from ..card import HUB_LICENSES
        from .pages import split_front_matter

        content = body.get("content") or ""
        if not isinstance(content, str):
            raise HubError(400, "content must be a string")
        data, _, error = split_front_matter(content)
        if error:
            return self._send(400, {"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []})
        errors = []
        if isinstance(data, dict):
            lic = data.get("license")
            if lic is not None and (not isinstance(lic, str) or lic not in HUB_LICENSES):
                errors.append({"message": f'"license" must be one of the Hub\'s license ids, got "{str(lic)[:100]}"'})
            for key in ("base_model", "datasets"):
                vals = data.get(key)
                for v in vals if isinstance(vals, list) else ([vals] if vals else []):
                    if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", str(v)):
                        errors.append({"message": f'"{key}" must be Hub ids, got "{str(v)[:100]}"'})
        self._send(400 if errors else 200, {"errors": errors, "warnings": []})

    def _login(self, method: str, which: str, query: dict) -> None:
        from .pages import login_page

        headers = dict(PAGE_HEADERS)
        if which == "logout":
            headers["Set-Cookie"] = f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
            headers["Location"] = "/"
            return self._send(303, raw=b"", headers=headers)
        if method == "GET":
            return self._send(200, raw=login_page(self.token is not None).encode(), headers=headers, content_type="text/html; charset=utf-8")
        if method != "POST":
            raise HubError(405, "Method not allowed")
        form = self._read_form()
        given = (form.get("token") or [""])[0]
        if not self.token or not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode()):
            return self._send(401, raw=login_page(self.token is not None, failed=True).encode(), headers=headers, content_type="text/html; charset=utf-8")
        headers["Set-Cookie"] = f"{SESSION_COOKIE}={self.hub.session_value()}; Path=/; HttpOnly; SameSite=Strict"
        headers["Location"] = "/"
        self._send(303, raw=b"", headers=headers)


# Pages run no script and load nothing from another host; the policy says so to the browser too.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_API_FIRST = {"api", "lfs-upload", "lfs-verify", "login", "logout"}


def _is_page(segs: list[str]) -> bool:
    """Whether a GET of `segs` is one of the Hub's web pages (index, repo pages), not the API."""
    if not segs:
        return True
    if segs[0] in _API_FIRST:
        return False
    rest = segs[1:] if segs[0] in ("datasets", "spaces") else segs
    if not rest:
        return True  # /models, /datasets, /spaces
    if len(rest) >= 3 and rest[2] == "resolve":
        return False
    return len(rest) >= 2 or segs[0] == "models"


def _flag(query: dict, key: str) -> bool:
    return (query.get(key) or ["0"])[0].lower() in ("1", "true", "yes")


class LocalHub:
    """`with LocalHub(root) as hub:` serves on 127.0.0.1 (an ephemeral port unless given).

    `token`: required on every call when set (the Python API; the CLI reads HUBKIT_HUB_TOKEN).
    `max_*_bytes`: request body limits (413 beyond). `sweep_every`: seconds between sweeps of
    abandoned uploads (None: only at start). `run_jobs`: run the Jobs API's jobs on this machine
    (their commands, as this process's user; see hubkit.hub.jobs), instead of failing them.
    Raises OSError when the port is taken."""

    def __init__(
        self, root: str | Path, *, port: int = 0, token: str | None = None, record: bool = False, faults: dict | None = None,
        max_json_bytes: int = DEFAULT_MAX_JSON, max_commit_bytes: int = DEFAULT_MAX_COMMIT, max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
        sweep_every: float | None = 600, incoming_age: float = 3600, object_age: float = 86400, run_jobs: bool = False,
    ):
        self.store = Store(Path(root))
        self.config = HubConfig(self.store, token, max_json=max_json_bytes, max_commit=max_commit_bytes, max_upload=max_upload_bytes, run_jobs=run_jobs)
        self.config.jobs.received = [] if record else None
        handler = type("BoundHandler", (Handler,), {"hub": self.config, "log_requests": [] if record else None, "faults": faults})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.httpd.open_connections = set()
        self.thread: threading.Thread | None = None
        self._sweep_args = {"incoming_age": incoming_age, "object_age": object_age}
        self._sweep_every = sweep_every
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def job_requests(self) -> list[dict]:
        """With `record`: every Jobs API request as received (method, path, query, the
        Authorization header and the JSON body), secrets included: for tests only."""
        return list(self.config.jobs.received or [])

    @property
    def requests(self) -> list[str]:
        return self.handler.log_requests if self.handler.log_requests is not None else []

    def sweep(self) -> dict:
        """Sweep abandoned uploads now (see Store.sweep); returns the counts removed."""
        return self.store.sweep(**self._sweep_args)

    def _sweep_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.sweep()
            if self._sweep_every is None or self._stop.wait(self._sweep_every):
                return

    def start(self) -> "LocalHub":
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="hubkit-local-hub-sweeper", daemon=True)
        self._sweeper.start()
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hubkit-local-hub", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.config.jobs.close()
        if self.thread is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            for conn in list(self.httpd.open_connections):  # a stopped hub answers nothing
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.thread = None

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(root: str | Path, port: int = 8765, token: str | None = None, *, on_ready=None, **limits) -> None:
    """Serve until interrupted (the `hubkit hub serve` command). HUBKIT_HUB_FAULTS (JSON, as
    LocalHub's `faults`) injects failures for fault tests. Raises HubkitError when the port is
    taken; `on_ready(url)` is called once it listens."""
    import errno

    from ..errors import HubkitError

    faults = json.loads(os.environ["HUBKIT_HUB_FAULTS"]) if os.environ.get("HUBKIT_HUB_FAULTS") else None
    try:
        hub = LocalHub(root, port=port, token=token, faults=faults, **limits)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            what = "is in use" if exc.errno == errno.EADDRINUSE else "is not allowed"
            raise HubkitError(f"port {port} on 127.0.0.1 {what}: start the hub on another one with --port PORT", hint="") from None
        raise
    if on_ready is not None:
        on_ready(hub.url)
    hub._stop.clear()
    threading.Thread(target=hub._sweep_loop, name="hubkit-local-hub-sweeper", daemon=True).start()
    try:
        hub.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub._stop.set()
        hub.httpd.server_close()
