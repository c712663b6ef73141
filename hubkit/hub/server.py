"""A local, loopback-only server speaking the subset of the Hugging Face Hub's HTTP API that the
unmodified `huggingface_hub` client uses to create repos, commit (regular and LFS files),
list, download, tag and branch (see the protocol notes this follows: hub-protocol.md).

The real Hub cannot be reached from the machines hubkit is built and tested on, and air-gapped
users cannot reach it either; this server lets the genuine client publish for real, end to end.
The client must run with `HF_ENDPOINT=<server url>` and `HF_HUB_DISABLE_XET=1` set before
huggingface_hub is imported (the Xet upload protocol is not implemented; its token route
answers 501 saying so).

Storage under `root/`: content-addressed blobs (`objects/<sha256>`), and per repo a commit
DAG (`commits/<sha1>.json`, each holding its whole tree) and refs (`refs.json`). Writes happen
under one lock, each commit written before the ref moves, so a reader never sees a partial
commit. Started with a token, every API call must carry it (401 otherwise).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".png", ".jpg", ".jpeg", ".parquet", ".arrow", ".zip", ".gz", ".tar", ".h5", ".onnx", ".msgpack", ".model", ".npy", ".pkl")
LFS_THRESHOLD = 10 * 1024 * 1024


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


_REF_LABEL = {"tags": "Tag", "branches": "Branch"}


class Store:
    """Repos, commits, refs and blobs on disk."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "incoming").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # -- repos ---------------------------------------------------------------------------------
    def repo_dir(self, rtype: str, repo_id: str) -> Path:
        return self.root / "repos" / rtype / repo_id

    def exists(self, rtype: str, repo_id: str) -> bool:
        return (self.repo_dir(rtype, repo_id) / "refs.json").is_file()

    def require(self, rtype: str, repo_id: str) -> Path:
        if not self.exists(rtype, repo_id):
            raise HubError(404, f"Repository Not Found for url: {repo_id}", "RepoNotFound")
        return self.repo_dir(rtype, repo_id)

    def meta(self, rtype: str, repo_id: str) -> dict:
        return json.loads((self.require(rtype, repo_id) / "meta.json").read_text())

    def create(self, rtype: str, repo_id: str, private: bool, sdk: str | None) -> None:
        with self.lock:
            if self.exists(rtype, repo_id):
                raise HubError(409, "You already created this repo", None)
            d = self.repo_dir(rtype, repo_id)
            d.mkdir(parents=True, exist_ok=True)
            (d / "commits").mkdir(exist_ok=True)
            (d / "meta.json").write_text(json.dumps({"private": private, "sdk": sdk, "created": _now()}))
            files = {}
            attrs = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in LFS_SUFFIXES)
            files[".gitattributes"] = self._put_blob(attrs, lfs=False)
            sha = self._write_commit(d, None, files, "initial commit", "")
            (d / "refs.json").write_text(json.dumps({"branches": {"main": sha}, "tags": {}}))

    def delete(self, rtype: str, repo_id: str) -> None:
        with self.lock:
            shutil.rmtree(self.require(rtype, repo_id))

    # -- blobs and commits ---------------------------------------------------------------------
    def _put_blob(self, data: bytes, lfs: bool) -> dict:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.root / "objects" / sha256
        if not path.is_file():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return {"sha256": sha256, "size": len(data), "oid": sha256 if lfs else git_blob_oid(data), "lfs": lfs}

    def blob_path(self, entry: dict) -> Path:
        return self.root / "objects" / entry["sha256"]

    def _write_commit(self, d: Path, parent: str | None, files: dict, title: str, description: str) -> str:
        body = {"parent": parent, "files": dict(sorted(files.items())), "title": title, "message": description, "date": _now()}
        raw = json.dumps(body, sort_keys=True).encode()
        sha = hashlib.sha1(raw).hexdigest()
        (d / "commits" / f"{sha}.json").write_bytes(raw)
        return sha

    def refs(self, d: Path) -> dict:
        return json.loads((d / "refs.json").read_text())

    def _set_refs(self, d: Path, refs: dict) -> None:
        tmp = d / "refs.json.tmp"
        tmp.write_text(json.dumps(refs, sort_keys=True))
        os.replace(tmp, d / "refs.json")

    def create_ref(self, rtype: str, repo_id: str, kind: str, name: str, start: str) -> None:
        """Point a new tag or branch (``kind`` is "tags" or "branches") at ``start``."""
        with self.lock:
            sha, _ = self.resolve(rtype, repo_id, start)
            d = self.repo_dir(rtype, repo_id)
            refs = self.refs(d)
            if name in refs[kind]:
                raise HubError(409, f"{_REF_LABEL[kind]} {name} already exists")
            refs[kind][name] = sha
            self._set_refs(d, refs)

    def delete_ref(self, rtype: str, repo_id: str, kind: str, name: str) -> None:
        with self.lock:
            d = self.require(rtype, repo_id)
            refs = self.refs(d)
            if refs[kind].pop(name, None) is None:
                raise HubError(404, f"{_REF_LABEL[kind]} not found", "RevisionNotFound")
            self._set_refs(d, refs)

    def resolve(self, rtype: str, repo_id: str, rev: str) -> tuple[str, dict]:
        d = self.require(rtype, repo_id)
        rev = unquote(rev)
        refs = self.refs(d)
        sha = refs["branches"].get(rev) or refs["tags"].get(rev)
        if sha is None and re.fullmatch(r"[0-9a-f]{40}", rev) and (d / "commits" / f"{rev}.json").is_file():
            sha = rev
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha, json.loads((d / "commits" / f"{sha}.json").read_text())

    def commit(self, rtype: str, repo_id: str, rev: str, lines: list[dict], create_pr: bool) -> dict:
        with self.lock:
            d = self.require(rtype, repo_id)
            head, current = self.resolve(rtype, repo_id, rev)
            header = next((l["value"] for l in lines if l.get("key") == "header"), {})
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.", None)
            files = dict(current["files"])
            for line in lines:
                key, value = line.get("key"), line.get("value") or {}
                if key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
                    files[value["path"]] = self._put_blob(data, lfs=False)
                elif key == "lfsFile":
                    oid = value["oid"]
                    blob = self.root / "objects" / oid
                    if not blob.is_file():
                        raise HubError(422, f"LFS object {oid} for {value['path']} was never uploaded", None)
                    files[value["path"]] = {"sha256": oid, "size": blob.stat().st_size, "oid": oid, "lfs": True}
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise HubError(404, f"Entry not found: {value['path']}", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    gone = [p for p in files if p.startswith(prefix)]
                    if not gone:
                        raise HubError(404, f"Entry not found: {value['path']}", "EntryNotFound")
                    for p in gone:
                        del files[p]
            sha = self._write_commit(d, head, files, header.get("summary") or "update", header.get("description") or "")
            refs = self.refs(d)
            result = {"commitOid": sha}
            if create_pr:
                n = len([b for b in refs["branches"] if b.startswith("refs/pr/")]) + 1
                refs["branches"][f"refs/pr/{n}"] = sha
                result["pullRequestUrl"] = f"/{PREFIX[rtype]}{repo_id}/discussions/{n}"
            else:
                branch = unquote(rev)
                if branch not in refs["branches"]:
                    raise HubError(400, f"Cannot commit to {branch}: not a branch", None)
                refs["branches"][branch] = sha
            self._set_refs(d, refs)
            return result


# -- HTTP -----------------------------------------------------------------------------------------

_REPO = r"(?P<type>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"


class Handler(BaseHTTPRequestHandler):
    server_version = "hubkit-local-hub/1"
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment, sent at once: otherwise Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every request.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    # set on the class by LocalHub
    store: Store
    token: str | None
    log_requests: list | None
    faults: dict | None = None  # for tests: {"status": {"METHOD path-regex": [codes]}, "exit_on": "METHOD path-regex"}

    def log_message(self, fmt, *args):  # quiet; requests are recorded in log_requests instead
        pass

    # open keep-alive connections, so that stopping the server really ends them
    def setup(self):
        super().setup()
        self.server.open_connections.add(self.connection)

    def finish(self):
        self.server.open_connections.discard(self.connection)
        super().finish()

    # -- plumbing --------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        return b"".join(self._body_chunks())

    def _body_chunks(self):
        """The request body, streamed: Content-Length or chunked transfer encoding (httpx sends
        generator bodies chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        while n:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                return
            n -= len(chunk)
            yield chunk

    def _send(self, status: int, payload: Any = None, headers: dict | None = None, raw: bytes | None = None, head: bool = False) -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if raw is None and payload is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)) if "Content-Length" not in (headers or {}) else headers["Content-Length"])
        self.end_headers()
        if not head and data:
            self.wfile.write(data)

    def _error(self, e: HubError, head: bool = False) -> None:
        headers = dict(e.headers)
        headers["X-Error-Message"] = e.message
        if e.code:
            headers["X-Error-Code"] = e.code
        self._send(e.status, None if head else {"error": e.message}, headers, head=head)

    def _authorized(self) -> bool:
        if not self.token:
            return True
        auth = self.headers.get("Authorization", "")
        return auth == f"Bearer {self.token}"

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        if self.log_requests is not None:
            self.log_requests.append(f"{method} {re.sub(r'/[0-9a-f]{64}', '/<oid>', url.path)}")
        head = method == "HEAD"
        if self.faults:
            line = f"{method} {path}"
            if self.faults.get("exit_on") and re.match(self.faults["exit_on"], line):
                os._exit(17)  # the server dies mid-request, as a crash or a kill would
            for pattern, codes in (self.faults.get("status") or {}).items():
                if codes and re.match(pattern, line):
                    code = codes.pop(0)
                    return self._error(HubError(code, f"injected fault {code}"), head=head)
        try:
            if not self._authorized() and not path.startswith("/lfs-"):
                if self.headers.get("Authorization"):
                    raise HubError(401, "Invalid credentials in Authorization header", None)
                raise HubError(401, "Authorization header is required", None)
            self._route(method, path, query)
        except HubError as e:
            self._error(e, head=head)
        except (KeyError, ValueError, json.JSONDecodeError) as e:
            self._error(HubError(400, f"Bad request: {type(e).__name__}: {e}"), head=head)

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

    # -- routes ----------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict) -> None:
        s = self.store
        if method == "GET" and path == "/api/whoami-v2":
            return self._send(200, {"type": "user", "name": "local-user", "fullname": "Local user", "orgs": [], "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if method == "POST" and path == "/api/repos/create":
            body = json.loads(self._body() or b"{}")
            rtype = body.get("type") or "model"
            repo_id = f"{body.get('organization') or 'local-user'}/{body['name']}"
            if rtype == "space" and not body.get("sdk"):
                raise HubError(400, "Missing sdk for a Space")
            s.create(rtype, repo_id, bool(body.get("private")), body.get("sdk"))
            return self._send(200, {"url": f"{self.base}/{PREFIX[rtype]}{repo_id}", "name": repo_id, "id": repo_id})
        if method == "DELETE" and path == "/api/repos/delete":
            body = json.loads(self._body() or b"{}")
            rtype = body.get("type") or "model"
            s.delete(rtype, f"{body.get('organization') or 'local-user'}/{body['name']}")
            return self._send(200, {})
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(self._body() or b"{}"))
        m = re.fullmatch(r"/lfs-(upload|verify)/(?P<oid>[0-9a-f]{64})", path)
        if m:
            return self._lfs_transfer(method, m.group(1), m.group("oid"))
        m = re.fullmatch(r"/(?:(?P<t>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            return self._lfs_batch(json.loads(self._body() or b"{}"))
        m = re.fullmatch(r"/api/" + _REPO + r"(?P<rest>/.*)?", path)
        if m:
            rtype, repo_id, rest = REPO_TYPES[m["type"]], f"{m['ns']}/{m['name']}", m["rest"] or ""
            return self._repo_api(method, rtype, repo_id, rest, query)
        m = re.fullmatch(r"/(?:(?P<t>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
        if m and method in ("GET", "HEAD"):
            rtype = {"datasets": "dataset", "spaces": "space"}.get(m["t"] or "", "model")
            return self._resolve(method, rtype, f"{m['ns']}/{m['name']}", m["rev"], m["file"])
        raise HubError(404, f"no route for {method} {path}")

    def _repo_api(self, method: str, rtype: str, repo_id: str, rest: str, query: dict) -> None:
        s = self.store
        if method == "GET" and (rest == "" or rest.startswith("/revision/")):
            rev = rest[len("/revision/"):] if rest else "main"
            sha, commit = s.resolve(rtype, repo_id, rev)
            meta = s.meta(rtype, repo_id)
            info = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": meta["private"], "lastModified": commit["date"], "siblings": [{"rfilename": p} for p in commit["files"]], "tags": [], "cardData": None}
            if rtype == "space":
                info["sdk"] = meta.get("sdk")
            return self._send(200, info)
        m = re.fullmatch(r"/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", rest)
        if method == "GET" and m:
            return self._tree(rtype, repo_id, m["rev"], (m["sub"] or "").strip("/"), query.get("recursive", ["false"])[0].lower() in ("1", "true"))
        m = re.fullmatch(r"/preupload/(?P<rev>[^/]+)", rest)
        if method == "POST" and m:
            return self._preupload(rtype, repo_id, m["rev"], json.loads(self._body() or b"{}"))
        m = re.fullmatch(r"/commit/(?P<rev>[^/]+)", rest)
        if method == "POST" and m:
            lines = [json.loads(l) for l in self._body().decode().splitlines() if l.strip()]
            create_pr = query.get("create_pr", ["0"])[0] in ("1", "true", "True")
            res = s.commit(rtype, repo_id, m["rev"], lines, create_pr)
            res["commitUrl"] = f"{self.base}/{PREFIX[rtype]}{repo_id}/commit/{res['commitOid']}"
            if "pullRequestUrl" in res:
                res["pullRequestUrl"] = self.base + res["pullRequestUrl"]
            return self._send(200, res)
        m = re.fullmatch(r"/(?P<kind>tag|branch)/(?P<name>.+)", rest)
        if m and method in ("POST", "DELETE"):
            kind = "tags" if m["kind"] == "tag" else "branches"
            if method == "POST":
                body = json.loads(self._body() or b"{}")
                if kind == "tags":
                    name, start = body["tag"], m["name"]
                else:
                    name, start = m["name"], body.get("startingPoint") or "main"
                s.create_ref(rtype, repo_id, kind, name, start)
            else:
                s.delete_ref(rtype, repo_id, kind, unquote(m["name"]))
            return self._send(200, {})
        if method == "GET" and rest == "/refs":
            refs = s.refs(s.require(rtype, repo_id))
            fmt = lambda kind, items: [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(items.items())]  # noqa: E731
            return self._send(200, {"branches": fmt("heads", {k: v for k, v in refs["branches"].items() if not k.startswith("refs/pr/")}), "tags": fmt("tags", refs["tags"]), "converts": []})
        m = re.fullmatch(r"/commits/(?P<rev>[^/]+)", rest)
        if method == "GET" and m:
            sha, commit = s.resolve(rtype, repo_id, m["rev"])
            out, d = [], s.repo_dir(rtype, repo_id)
            while sha:
                out.append({"id": sha, "title": commit["title"], "message": commit["message"], "date": commit["date"], "authors": [{"user": "local-user"}]})
                sha = commit["parent"]
                commit = json.loads((d / "commits" / f"{sha}.json").read_text()) if sha else None
            return self._send(200, out)
        if rest.startswith("/xet-write-token"):
            raise HubError(501, "This local hub does not implement Xet uploads: set HF_HUB_DISABLE_XET=1 before importing huggingface_hub")
        if method == "PUT" and rest == "/settings":
            return self._send(200, {})
        raise HubError(404, f"no route for {method} /api/{rtype}s/{repo_id}{rest}")

    def _tree(self, rtype: str, repo_id: str, rev: str, sub: str, recursive: bool) -> None:
        _, commit = self.store.resolve(rtype, repo_id, rev)
        prefix = sub + "/" if sub else ""
        entries, dirs = [], set()
        for p, e in commit["files"].items():
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                if recursive or i == 1:
                    dirs.add(prefix + "/".join(parts[:i]))
            if recursive or len(parts) == 1:
                # git's oid of an LFS file is that of its pointer file
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{e['sha256']}\nsize {e['size']}\n".encode()
                item = {"type": "file", "path": p, "size": e["size"], "oid": git_blob_oid(pointer) if e["lfs"] else e["oid"]}
                if e["lfs"]:
                    item["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": 134}
                entries.append(item)
        if sub and not entries and not dirs:
            raise HubError(404, f"Entry not found: {sub}", "EntryNotFound")
        out = [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(dirs)] + sorted(entries, key=lambda x: x["path"])
        self._send(200, out)

    def _preupload(self, rtype: str, repo_id: str, rev: str, body: dict) -> None:
        _, commit = self.store.resolve(rtype, repo_id, rev)
        out = []
        for f in body.get("files", []):
            sample = base64.b64decode(f.get("sample") or "")
            size = int(f.get("size") or 0)
            lfs = size > 0 and (size > LFS_THRESHOLD or b"\0" in sample or f["path"].lower().endswith(LFS_SUFFIXES))
            existing = commit["files"].get(f["path"])
            oid = None
            if existing is not None and existing["lfs"] == lfs:
                oid = existing["oid"]
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send(200, {"files": out})

    def _lfs_batch(self, body: dict) -> None:
        objects = []
        for o in body.get("objects", []):
            item = {"oid": o["oid"], "size": o["size"]}
            if not (self.store.root / "objects" / o["oid"]).is_file():
                item["actions"] = {"upload": {"href": f"{self.base}/lfs-upload/{o['oid']}"}, "verify": {"href": f"{self.base}/lfs-verify/{o['oid']}"}}
            objects.append(item)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_transfer(self, method: str, action: str, oid: str) -> None:
        if action == "upload" and method == "PUT":
            tmp = self.store.root / "incoming" / f"{oid}.{threading.get_ident()}"
            h = hashlib.sha256()
            with tmp.open("wb") as fh:
                for chunk in self._body_chunks():
                    fh.write(chunk)
                    h.update(chunk)
            if h.hexdigest() != oid:
                tmp.unlink(missing_ok=True)
                raise HubError(400, f"sha256 mismatch for LFS object {oid}")
            os.replace(tmp, self.store.root / "objects" / oid)
            return self._send(200, {})
        if action == "verify" and method == "POST":
            self._body()
            if not (self.store.root / "objects" / oid).is_file():
                raise HubError(404, f"LFS object {oid} not found")
            return self._send(200, {})
        raise HubError(405, "method not allowed")

    def _resolve(self, method: str, rtype: str, repo_id: str, rev: str, file: str) -> None:
        sha, commit = self.store.resolve(rtype, repo_id, rev)
        e = commit["files"].get(file)
        if e is None:
            raise HubError(404, f"Entry not found: {file}", "EntryNotFound", {"X-Repo-Commit": sha})
        path = self.store.blob_path(e)
        size = e["size"]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{e["oid"]}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if e["lfs"]:
            headers.update({"X-Linked-Etag": f'"{e["sha256"]}"', "X-Linked-Size": str(size)})
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and size:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1) or 0)
                end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method == "GET" and length:
            with path.open("rb") as fh:
                fh.seek(start)
                left = length
                while left:
                    chunk = fh.read(min(left, 1 << 20))
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _validate_yaml(self, body: dict) -> None:
        import yaml

        from ..card import HUB_LICENSES

        errors = []
        content = body.get("content") or ""
        m = re.match(r"^\s*---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)  # the README's front matter
        try:
            data = (yaml.safe_load(m.group(1)) if m else {}) or {}
        except yaml.YAMLError as exc:
            return self._send(400, {"errors": [{"message": f"Invalid YAML: {exc}"}], "warnings": []})
        if isinstance(data, dict):
            lic = data.get("license")
            if lic is not None and lic not in HUB_LICENSES:
                errors.append({"message": f'"license" must be one of the Hub\'s license ids, got "{lic}"'})
            for key in ("base_model", "datasets"):
                vals = data.get(key)
                for v in vals if isinstance(vals, list) else ([vals] if vals else []):
                    if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", str(v)):
                        errors.append({"message": f'"{key}" must be Hub ids, got "{v}"'})
        self._send(400 if errors else 200, {"errors": errors, "warnings": []})


class LocalHub:
    """`with LocalHub(root) as hub:` serves on 127.0.0.1 (an ephemeral port unless given)."""

    def __init__(self, root: str | Path, *, port: int = 0, token: str | None = None, record: bool = False, faults: dict | None = None):
        self.store = Store(Path(root))
        handler = type("BoundHandler", (Handler,), {"store": self.store, "token": token, "log_requests": [] if record else None, "faults": faults})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.httpd.open_connections = set()
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[str]:
        return self.handler.log_requests if self.handler.log_requests is not None else []

    def start(self) -> "LocalHub":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hubkit-local-hub", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
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


def serve(root: str | Path, port: int = 8765, token: str | None = None) -> None:
    """Serve until interrupted (the `hubkit hub serve` command). HUBKIT_HUB_FAULTS (JSON, as
    LocalHub's `faults`) injects failures for fault tests."""
    faults = json.loads(os.environ["HUBKIT_HUB_FAULTS"]) if os.environ.get("HUBKIT_HUB_FAULTS") else None
    hub = LocalHub(root, port=port, token=token, faults=faults)
    try:
        hub.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.httpd.server_close()
