"""The local hub as a server others can reach: names validated, every path confined to the root,
auth on every route, bounded bodies, sweeps, and a bounded fuzz run of the whole API.

Attacks run against a hub in a child process whose file access is watched by an audit hook:
any open, listing, creation, rename or removal of the sentinel folder outside the root, and
any write anywhere outside the root, is reported on its stderr (and refused). Each test then
checks the sentinel folder byte for byte and that the server logged no traceback."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from hubkit.hub.server import LocalHub

TOKEN = "hf_" + "localTESTtoken0123456789abcdef"
SENTINEL = b"SENTINEL-7d1f0c: nothing may read this\n"

GUARDED_SERVER = textwrap.dedent(
    r"""
    import os, sys, threading
    root, outside, token = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3] or None
    root_real = os.path.realpath(root)
    MUTATE = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.replace", "shutil.rmtree", "os.chmod",
              "os.utime", "os.symlink", "os.link", "os.truncate", "os.chown", "shutil.copyfile", "shutil.move"}
    WATCH = MUTATE | {"open", "os.listdir", "os.scandir"}

    def _real(a):
        if isinstance(a, int):
            return None
        try:
            return os.path.realpath(os.fsdecode(a))
        except Exception:
            return None

    def _inside(p, top):
        return p == top or p.startswith(top + os.sep)

    def guard(event, args):
        if event not in WATCH:
            return
        writing = event in MUTATE
        if event == "open":
            mode, flags = (args[1] or ""), (args[2] or 0)
            writing = any(c in str(mode) for c in "wax+") or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        for a in args[:1] if event in ("open", "os.mkdir", "os.listdir", "os.scandir", "os.remove", "os.rmdir") else args[:2]:
            if not isinstance(a, (str, bytes, os.PathLike)):
                continue
            p = _real(a)
            if p is None:
                continue
            if _inside(p, outside) or (writing and not _inside(p, root_real) and p != "/dev/null"):
                sys.stderr.write(f"GUARD {event} {p}\n")
                sys.stderr.flush()
                raise PermissionError("guard: outside the hub's root")

    from hubkit.hub.server import LocalHub
    hub = LocalHub(root, token=token, max_json_bytes=1 << 20, max_commit_bytes=4 << 20, max_upload_bytes=1 << 20).start()
    sys.addaudithook(guard)
    print(hub.url, flush=True)
    threading.Event().wait()
    """
)


class Guarded:
    """A hub in a child process, with a sentinel folder beside its root that nothing may touch."""

    def __init__(self, tmp: Path, token: str | None = None):
        self.root = tmp / "hub"
        self.outside = tmp / "outside"
        (self.outside / "dir").mkdir(parents=True)
        self.secret = self.outside / "secret.txt"
        self.secret.write_bytes(SENTINEL)
        (self.outside / "dir" / "keep.txt").write_text("keep")
        self.before = self.snapshot()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", GUARDED_SERVER, str(self.root), str(self.outside), token or ""],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp,
        )
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.proc.stderr.read()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.token = token

    def snapshot(self) -> dict:
        """The sentinel folder (contents and times) and what sits beside the root."""
        inside = {str(p.relative_to(self.outside)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns) for p in sorted(self.outside.rglob("*"))}
        return {"outside": inside, "outside_mtime": self.outside.stat().st_mtime_ns, "beside": sorted(p.name for p in self.outside.parent.iterdir() if p != self.root)}

    def close(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        return err


@pytest.fixture
def guarded(tmp_path):
    g = Guarded(tmp_path)
    yield g
    err = g.close()
    assert "GUARD" not in err, f"the server touched the sentinel or wrote outside its root:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    after = g.snapshot()
    assert after == g.before, "something outside the root was created, changed or deleted"


def raw_request(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (malformed requests included); the answer up to the server's close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered early and closed: read what it said
            pass
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def request(port: int, method: str, path: str, body: bytes | str | dict | list | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    if body is not None and "Content-Length" not in (headers or {}) and "Transfer-Encoding" not in (headers or {}):
        head += f"Content-Length: {len(body)}\r\n"
    resp = raw_request(port, head.encode("latin-1") + b"\r\n" + (body or b""))
    status = int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else 0
    return status, resp


def ndjson(*lines: dict) -> str:
    return "\n".join(json.dumps(x) for x in [{"key": "header", "value": {"summary": "x"}}, *lines])


def make_repo(port: int, repo: str = "me/ok", headers: dict | None = None) -> None:
    ns, name = repo.split("/")
    assert request(port, "POST", "/api/repos/create", {"name": name, "organization": ns}, headers)[0] == 200
    body = ndjson({"key": "file", "value": {"path": "README.md", "content": base64.b64encode(b"# ok\n").decode(), "encoding": "base64"}})
    assert request(port, "POST", f"/api/models/{repo}/commit/main", body, {"Content-Type": "application/x-ndjson", **(headers or {})})[0] == 200


# -- the attacks of issue #15, one test each -----------------------------------------------------


def test_an_lfs_oid_is_never_a_path(guarded):
    """An LFS oid naming a file (absolute, relative, dressed as a path) is refused; resolve
    never serves the file; the sentinel is never opened."""
    make_repo(guarded.port)
    real = hashlib.sha256(guarded.secret.read_bytes()).hexdigest()
    for oid in (str(guarded.secret), "../../outside/secret.txt", "../" * 12 + str(guarded.secret).lstrip("/"), "/etc/passwd", real[:63] + "/", real.upper(), real):
        line = {"key": "lfsFile", "value": {"path": "weights.safetensors", "algo": "sha256", "oid": oid, "size": 22}}
        status, resp = request(guarded.port, "POST", "/api/models/me/ok/commit/main", ndjson(line), {"Content-Type": "application/x-ndjson"})
        assert status in (400, 422), (oid, resp[-300:])  # 422: a well-formed oid never uploaded
        status, resp = request(guarded.port, "GET", "/me/ok/resolve/main/weights.safetensors")
        assert status == 404 and SENTINEL not in resp
        for path in (f"/lfs-verify/{oid}", f"/lfs-upload/{quote(oid, safe='')}"):
            status, resp = request(guarded.port, "POST" if "verify" in path else "PUT", path, b"x" if "upload" in path else {})
            assert status in (400, 403, 404) and SENTINEL not in resp


def test_a_store_entry_naming_a_path_is_not_served(tmp_path):
    """Defence in depth: a commit already on disk whose oid is a path (as an older server
    wrote them), or an object that is a symlink out of the root, is never followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SENTINEL)
    with LocalHub(tmp_path / "hub") as hub:
        port = hub.httpd.server_address[1]
        make_repo(port)
        d = hub.store.repo_dir("model", "me/ok")
        refs = json.loads((d / "refs.json").read_text())
        commit = json.loads((d / "commits" / f"{refs['branches']['main']}.json").read_text())
        commit["files"]["evil.bin"] = {"sha256": "../../../outside/secret.txt", "size": 22, "oid": "x", "lfs": True}
        real = hashlib.sha256(secret.read_bytes()).hexdigest()
        (hub.store.root / "objects" / real).symlink_to(secret)
        commit["files"]["link.bin"] = {"sha256": real, "size": 22, "oid": real, "lfs": True}
        raw = json.dumps(commit, sort_keys=True).encode()
        sha = hashlib.sha1(raw).hexdigest()
        (d / "commits" / f"{sha}.json").write_bytes(raw)
        refs["branches"]["main"] = sha
        (d / "refs.json").write_text(json.dumps(refs))
        for f in ("evil.bin", "link.bin"):
            status, resp = request(port, "GET", f"/me/ok/resolve/main/{f}")
            assert status in (400, 500) and SENTINEL not in resp, resp[-300:]
            assert b"Traceback" not in resp
        # and the symlinked object is not taken as uploaded
        status, _ = request(port, "POST", "/api/models/me/ok/commit/main", ndjson({"key": "lfsFile", "value": {"path": "x.bin", "oid": real, "size": 22}}))
        assert status == 400


CLIMBING_BODIES = [
    {"name": "x", "organization": "/tmp"},
    {"name": "x", "organization": "../.."},
    {"name": "..", "organization": ".."},
    {"name": "../../outside/dir", "organization": "me"},
    {"name": "dir", "organization": "OUTSIDE"},
    {"name": "x/../../../outside", "organization": "me"},
    {"name": "x", "organization": "me/../../.."},
    {"name": "x\x00y", "organization": "me"},
    {"name": "x", "organization": "..\\..\\outside"},
    {"name": ["x"], "organization": {"a": 1}},
    {"name": ".", "organization": "."},
    {"name": "repos", "organization": ".."},
    {"name": "", "organization": ""},
    {},
]


def test_repo_create_and_delete_stay_in_the_root(guarded):
    """repos/create and repos/delete with a namespace or name that is a path (the whole store
    included): 400, nothing created or removed outside the root, and the store intact."""
    make_repo(guarded.port, "me/keep")
    for body in CLIMBING_BODIES:
        body = {k: (str(guarded.outside) if v == "OUTSIDE" else v) for k, v in body.items()}
        for t in ("model", "dataset", "space"):
            status, resp = request(guarded.port, "POST", "/api/repos/create", {**body, "type": t, "sdk": "gradio"})
            assert status == 400, (body, resp[-300:])
            status, resp = request(guarded.port, "DELETE", "/api/repos/delete", {**body, "type": t})
            assert status == 400, (body, resp[-300:])
    assert request(guarded.port, "POST", "/api/repos/create", {"name": "x", "organization": "api"})[0] == 400  # reserved: /api/... is routed
    assert request(guarded.port, "GET", "/api/models/me/keep")[0] == 200
    assert sorted(p.name for p in (guarded.root / "repos" / "model").iterdir()) == ["me"]
    assert (guarded.root / "objects").is_dir()


def test_url_paths_cannot_climb_out(guarded):
    """Traversal in the URL itself, raw or percent-encoded, in every route that takes a path."""
    make_repo(guarded.port)
    rel = "../../../outside/secret.txt"
    variants = [rel, quote(rel, safe=""), quote(rel, safe="/"), rel.replace("/", "%5c"), "%2e%2e/%2e%2e/%2e%2e/outside/secret.txt", "%252e%252e/outside/secret.txt", "x%00/../../secret.txt", quote(str(guarded.secret), safe="")]
    for v in variants:
        for path in (f"/me/ok/resolve/main/{v}", f"/api/models/me/ok/tree/main/{v}", f"/me/ok/blob/main/{v}", f"/me/ok/tree/main/{v}", f"/api/models/{v}", f"/{v}", f"/api/models/me/ok/revision/{v}", f"/me/ok/resolve/{v}/README.md"):
            status, resp = request(guarded.port, "GET", path)
            assert status in (400, 404), (path, resp[:300])
            assert SENTINEL not in resp


# -- auth --------------------------------------------------------------------------------------------


WRITE_ROUTES = [
    ("POST", "/api/repos/create", {"name": "new", "organization": "me"}),
    ("DELETE", "/api/repos/delete", {"name": "ok", "organization": "me"}),
    ("POST", "/api/models/me/ok/preupload/main", {"files": [{"path": "a", "size": 1, "sample": ""}]}),
    ("POST", "/api/models/me/ok/commit/main", None),
    ("POST", "/api/models/me/ok/tag/main", {"tag": "v9"}),
    ("POST", "/api/models/me/ok/branch/dev", {}),
    ("DELETE", "/api/models/me/ok/branch/main", None),
    ("PUT", "/api/models/me/ok/settings", {"private": True}),
    ("POST", "/me/ok.git/info/lfs/objects/batch", {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 3}]}),
    ("POST", "/lfs-verify/" + "a" * 64, {"oid": "a" * 64, "size": 3}),
    ("POST", "/api/validate-yaml", {"content": "---\nlicense: mit\n---\n"}),
]


def test_every_write_route_needs_the_token(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN) as hub:
        port = hub.httpd.server_address[1]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        make_repo(port, headers=auth)
        before = sorted(str(p.relative_to(hub.store.root)) for p in hub.store.root.rglob("*") if "incoming" not in p.parts)
        for method, path, body in WRITE_ROUTES:
            for headers in ({}, {"Authorization": "Bearer hf_wrong"}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}):
                b = ndjson({"key": "deletedFile", "value": {"path": "README.md"}}) if body is None and "commit" in path else body
                status, resp = request(port, method, path, b, headers)
                assert status == 401, (method, path, headers, resp[:200])
                assert TOKEN.encode() not in resp
        assert sorted(str(p.relative_to(hub.store.root)) for p in hub.store.root.rglob("*") if "incoming" not in p.parts) == before
        # reads too, unless the browser signed in; a session cookie never writes
        assert request(port, "GET", "/api/models/me/ok")[0] == 401
        assert request(port, "GET", "/me/ok")[0] == 401
        status, resp = request(port, "POST", "/login", "token=nope", {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 401 and b"Set-Cookie" not in resp
        status, resp = request(port, "POST", "/login", f"token={TOKEN}", {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303
        cookie = next(line.split(b":", 1)[1].split(b";")[0].strip().decode() for line in resp.split(b"\r\n") if line.lower().startswith(b"set-cookie"))
        assert TOKEN not in cookie
        assert request(port, "GET", "/me/ok", headers={"Cookie": cookie})[0] == 200
        assert request(port, "POST", "/api/repos/create", {"name": "via-cookie", "organization": "me"}, {"Cookie": cookie})[0] == 401


def test_lfs_upload_urls_are_signed_and_bound_to_oid_and_size(tmp_path):
    """huggingface_hub PUTs LFS objects without its token, like to a presigned URL: only the
    URL an authorized batch call returned works, for that object and size, and not for long."""
    data = b"weights" * 100
    oid = hashlib.sha256(data).hexdigest()
    with LocalHub(tmp_path / "hub", token=TOKEN) as hub:
        port = hub.httpd.server_address[1]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        make_repo(port, headers=auth)
        status, resp = request(port, "POST", "/me/ok.git/info/lfs/objects/batch", {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}, auth)
        assert status == 200
        href = json.loads(resp.split(b"\r\n\r\n", 1)[1])["objects"][0]["actions"]["upload"]["href"]
        path = href.split("127.0.0.1:", 1)[1].split("/", 1)[1]
        for bad in (f"/lfs-upload/{oid}", "/" + path.replace("sig=", "sig=0"), "/" + path.replace(f"size={len(data)}", f"size={len(data) + 1}"), "/" + path.replace(oid, "b" * 64)):
            assert request(port, "PUT", bad, data)[0] in (400, 403), bad
        assert not (hub.store.root / "objects" / oid).exists()
        assert request(port, "PUT", "/" + path, data + b"more")[0] == 400  # more bytes than signed
        assert request(port, "PUT", "/" + path, b"x" * len(data))[0] == 400  # right size, wrong content
        assert request(port, "PUT", "/" + path, data)[0] == 200
        assert (hub.store.root / "objects" / oid).read_bytes() == data
        assert not list((hub.store.root / "incoming").iterdir())


# -- bodies, sweeps, errors ---------------------------------------------------------------------------


def test_bodies_are_bounded(tmp_path):
    with LocalHub(tmp_path / "hub", max_json_bytes=2048, max_commit_bytes=8192, max_upload_bytes=4096) as hub:
        port = hub.httpd.server_address[1]
        make_repo(port)
        status, resp = request(port, "POST", "/api/repos/create", {"name": "x" * 10, "organization": "me", "pad": "y" * 5000})
        assert status == 413
        big = base64.b64encode(os.urandom(9000)).decode()
        status, _ = request(port, "POST", "/api/models/me/ok/commit/main", ndjson({"key": "file", "value": {"path": "big.txt", "content": big, "encoding": "base64"}}))
        assert status == 413
        # chunked, without a length up front: counted as it streams
        chunk = b"a" * 3000
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
        status, _ = request(port, "POST", "/api/models/me/ok/commit/main", body, {"Transfer-Encoding": "chunked"})
        assert status == 413
        # a declared length past the limit is refused before anything is read
        status, resp = request(port, "PUT", "/api/models/me/ok/settings", b"", {"Content-Length": str(10**12)})
        assert status == 413
        # the LFS batch refuses an object over the limit per object, as the Hub does
        status, resp = request(port, "POST", "/me/ok.git/info/lfs/objects/batch", {"objects": [{"oid": "c" * 64, "size": 5000}]})
        obj = json.loads(resp.split(b"\r\n\r\n", 1)[1])["objects"][0]
        assert status == 200 and obj["error"]["code"] == 422 and "actions" not in obj
        assert request(port, "GET", "/api/models/me/ok/tree/main")[0] == 200
        assert not list((hub.store.root / "incoming").iterdir())  # spooled bodies are removed


def test_unread_bodies_never_become_the_next_request(tmp_path):
    """A refused request's body is drained (small) or the connection closed (large): it is
    never parsed as a request of its own on a kept-alive connection."""
    with LocalHub(tmp_path / "hub", token=TOKEN) as hub:
        port = hub.httpd.server_address[1]
        smuggled = b"DELETE /api/repos/delete HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        first = b"POST /api/repos/create HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
        second = b"GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n\r\n"
        resp = raw_request(port, first + second)
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", resp)
        assert statuses == [b"401", b"200"], resp[:500]


def test_sweep_removes_abandoned_uploads_only(tmp_path):
    with LocalHub(tmp_path / "hub", sweep_every=None, incoming_age=60, object_age=60) as hub:
        port = hub.httpd.server_address[1]
        make_repo(port)
        store = hub.store
        old = time.time() - 3600
        stale_upload = store.root / "incoming" / "abandoned.lfs"
        stale_upload.write_bytes(b"half")
        os.utime(stale_upload, (old, old))
        fresh_upload = store.root / "incoming" / "in-progress.lfs"
        fresh_upload.write_bytes(b"going")
        orphan = store.put_blob(b"never committed", lfs=True)["sha256"]
        os.utime(store.root / "objects" / orphan, (old, old))
        young_orphan = store.put_blob(b"uploaded a moment ago", lfs=True)["sha256"]
        kept = [p.name for p in (store.root / "objects").iterdir() if p.name not in (orphan, young_orphan)]
        for name in kept:
            os.utime(store.root / "objects" / name, (old, old))
        counts = hub.sweep()
        assert counts["incoming"] == 1 and counts["objects"] == 1
        assert not stale_upload.exists() and fresh_upload.exists()
        assert not (store.root / "objects" / orphan).exists() and (store.root / "objects" / young_orphan).exists()
        assert all((store.root / "objects" / n).exists() for n in kept)  # what commits reference stays
        assert request(port, "GET", "/me/ok/resolve/main/README.md")[0] == 200


def test_an_upload_cut_off_midway_leaves_nothing(tmp_path):
    data = os.urandom(200_000)
    oid = hashlib.sha256(data).hexdigest()
    with LocalHub(tmp_path / "hub") as hub:
        port = hub.httpd.server_address[1]
        make_repo(port)
        _, resp = request(port, "POST", "/me/ok.git/info/lfs/objects/batch", {"objects": [{"oid": oid, "size": len(data)}]})
        href = json.loads(resp.split(b"\r\n\r\n", 1)[1])["objects"][0]["actions"]["upload"]["href"]
        path = "/" + href.split("127.0.0.1:", 1)[1].split("/", 1)[1]
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:50_000])
        deadline = time.monotonic() + 30  # the handler notices the closed connection at its own pace
        while list((hub.store.root / "incoming").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list((hub.store.root / "incoming").iterdir())
        assert not (hub.store.root / "objects" / oid).exists()


def test_no_traceback_reaches_a_client(tmp_path, capfd):
    """A failure the server did not foresee answers a bare 500; the traceback goes to the
    server's stderr, not to the client."""
    with LocalHub(tmp_path / "hub") as hub:
        port = hub.httpd.server_address[1]
        make_repo(port)
        hub.store.meta = None  # a bug, planted
        status, resp = request(port, "GET", "/api/models/me/ok")
        assert status == 500 and b"Traceback" not in resp and b"NoneType" not in resp
    assert "Traceback" in capfd.readouterr().err


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_refuses_a_token_on_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hubkit", "hub", "serve", "--root", str(tmp_path / "h"), "--port", "0", "--token", TOKEN], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "HUBKIT_HUB_TOKEN" in proc.stderr and "process list" in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_cli_port_in_use_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "hubkit", "hub", "serve", "--root", str(tmp_path / "h"), "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(port) in lines[0] and "--port" in lines[0] and "Traceback" not in proc.stderr


# -- a bounded fuzz run of the whole API --------------------------------------------------------------

EVIL = [
    "..", ".", "../..", "../../outside/secret.txt", "/etc/passwd", "OUTSIDE", "OUTSIDE/secret.txt", "%2e%2e", "%2e%2e%2f%2e%2e", "..%2f..%2f", "..\\..\\outside",
    "a\x00b", "\x00", "", " ", "a/../../b", "refs/pr/1", "refs%2Fpr%2F1", "main", "v1", "me", "ok", "me/ok", "README.md", ".git/config", "x.git", "a--b", "-a", "a.",
    "é", "\u202e", "x" * 300, "%00", "%ff%fe", "*", "~", "@{1}", "HEAD", "a" * 64, "A" * 64, "0" * 40, "con", "C:/x", "//x", "/",
]


def test_fuzz_every_route_with_malformed_and_traversal_inputs(guarded):
    """Hypothesis throws malformed and traversal values at every route (repo ids, revisions,
    file paths, oids, JSON bodies, NDJSON commit lines, headers): no answer is a 500 or shows a
    traceback, and the guard sees nothing outside the root read, created or deleted.
    150 examples by default (a few seconds); HUBKIT_FUZZ_EXAMPLES=5000 for a longer run."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    make_repo(guarded.port)
    evil = [e.replace("OUTSIDE", str(guarded.outside)) for e in EVIL]
    part = st.one_of(st.sampled_from(evil), st.text(max_size=12))
    encoded = st.tuples(part, st.sampled_from(["raw", "quote", "quote_all"])).map(lambda t: t[0] if t[1] == "raw" else quote(t[0], safe="/" if t[1] == "quote" else ""))
    rtype = st.sampled_from(["models", "datasets", "spaces", "x"])
    path = st.one_of(
        st.builds(lambda a, b: f"/api/repos/{a}", st.sampled_from(["create", "delete", "move"]), st.none()),
        st.builds(lambda t, ns, n, op, rev, f: f"/api/{t}/{ns}/{n}/{op}/{rev}/{f}", rtype, encoded, encoded, st.sampled_from(["tree", "revision", "preupload", "commit", "tag", "branch", "commits", "paths-info", "refs", "settings", "xet-write-token"]), encoded, encoded),
        st.builds(lambda t, ns, n: f"/api/{t}/{ns}/{n}", rtype, encoded, encoded),
        st.builds(lambda t, ns, n, rev, f: f"/{t}{ns}/{n}/resolve/{rev}/{f}", st.sampled_from(["", "datasets/", "spaces/"]), encoded, encoded, encoded, encoded),
        st.builds(lambda t, ns, n, v, rev, f: f"/{t}{ns}/{n}/{v}/{rev}/{f}", st.sampled_from(["", "datasets/", "spaces/"]), encoded, encoded, st.sampled_from(["tree", "blob", "commits", "commit"]), encoded, encoded),
        st.builds(lambda ns, n: f"/{ns}/{n}.git/info/lfs/objects/batch", encoded, encoded),
        st.builds(lambda a, o: f"/lfs-{a}/{o}", st.sampled_from(["upload", "verify"]), encoded),
        st.builds(lambda q: f"/api/models?{q}", st.sampled_from(["author=me", "search=..", "limit=-1", "limit=x", "cursor=-5", "filter=a&filter=b", "full=1&cardData=1", "sort=lastModified&direction=-1", "%ff=1"])),
        st.sampled_from(["/", "/models", "/datasets", "/spaces", "/login", "/api/whoami-v2", "/api/validate-yaml", "/me/ok", "/me/ok/tree/main", "*", "/%", "/%zz", "/../../etc/passwd"]),
    )
    scalar = st.one_of(st.sampled_from(evil), st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(), st.floats(allow_nan=True))
    jvalue = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "organization", "type", "sdk", "private", "tag", "startingPoint", "files", "path", "sample", "size", "oid", "objects", "operation", "content", "paths"]), inner, max_size=4)), max_leaves=8)
    jbody = st.dictionaries(st.sampled_from(["name", "organization", "type", "sdk", "private", "visibility", "tag", "message", "startingPoint", "files", "objects", "operation", "content", "oid", "size"]), jvalue, max_size=5)
    commit_line = st.one_of(
        st.builds(lambda k, p, c, e: {"key": k, "value": {"path": p, "content": c, "encoding": e}}, st.sampled_from(["file", "lfsFile", "deletedFile", "deletedFolder", "header", "x"]), scalar, scalar, st.sampled_from(["base64", "utf-8", None, "x"])),
        st.builds(lambda p, o, s: {"key": "lfsFile", "value": {"path": p, "algo": "sha256", "oid": o, "size": s}}, scalar, scalar, scalar),
        st.builds(lambda v: {"key": "header", "value": v}, jvalue),
        jvalue,
    )
    body = st.one_of(
        st.none(),
        jbody.map(json.dumps),
        st.lists(commit_line, max_size=4).map(lambda ls: "\n".join(json.dumps(x) for x in ls)),
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
        st.sampled_from(["paths=../../x&paths=README.md", "token=x", "{", "[]", "null", '{"files": [{"path": "../x", "size": 1e400}]}', '{"a":' * 2000]),
    )
    header_sets = st.lists(
        st.sampled_from([
            ("Content-Length", "-1"), ("Content-Length", "abc"), ("Content-Length", "99999999999999999999"), ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "gzip"),
            ("Range", "bytes=5-1"), ("Range", "bytes=-99999"), ("Range", "bytes=99999999999999999999-"), ("Range", "bytes=0-0,2-3"), ("Authorization", "Bearer ../../x"),
            ("Cookie", "hubkit_hub_session=../../x"), ("Content-Type", "application/x-www-form-urlencoded"), ("Host", "evil.example"), ("Expect", "100-continue"),
        ]),
        max_size=3, unique_by=lambda h: h[0],
    )

    failures = []

    @settings(max_examples=int(os.environ.get("HUBKIT_FUZZ_EXAMPLES", "150")), deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]), path=path, body=body, headers=header_sets)
    def run(method, path, body, headers):
        target = "".join(c if 0x20 < ord(c) < 0x7F else quote(c) for c in path)
        data = (body or "").encode("utf-8", "surrogatepass")
        head = f"{method} {target} HTTP/1.1\r\nConnection: close\r\n"
        hdrs = dict(headers)
        if "Content-Length" not in hdrs and "Transfer-Encoding" not in hdrs:
            hdrs["Content-Length"] = str(len(data))
        if hdrs.get("Transfer-Encoding") == "chunked" and data:
            data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        hdrs.setdefault("Host", "127.0.0.1")
        head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        resp = raw_request(guarded.port, head.encode("latin-1", "replace") + b"\r\n" + data)
        status = resp.split(b" ", 2)[1] if resp.startswith(b"HTTP/1.") else b"none"
        if status.startswith(b"5") and status != b"501" or b"Traceback" in resp or SENTINEL in resp:
            failures.append((method, path, body, headers, resp[:400]))

    run()
    assert not failures, failures[:5]
