"""`hubkit publish` under hostile input and a failing Hub, driven through the CLI as a user would:
tokens hidden where the old scan did not look, a same-size edit with its mtime put back, a tag
that fails after its commit landed, an unreachable / hanging / dying hub, two publishes creating
one repo, a run record that lost a file. Each asserts the exit code, the one-line message, and
that nothing was lost or leaked.

Built on a hand-made tiny adapter (no torch, no training), so the file runs in seconds."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hubkit.cli import main
from hubkit.hub.server import LocalHub
from hubkit.secrets import CHUNK
from hubkit.space_build import free_port

TOKEN = "hf_" + "safetyTESTtoken0123456789abcdef"
LEAK = "hf_" + "LeakedLeakedLeaked0123456789abcd"  # a token someone left in a file
REPO = "me/tiny-lora"
TENSOR_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
TENSOR_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


def save_adapter_weights(path: Path, metadata: dict | None = None, seed: int = 0) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {TENSOR_A: rng.standard_normal((4, 8)).astype(np.float32), TENSOR_B: rng.standard_normal((8, 4)).astype(np.float32)}
    save_file(tensors, str(path), metadata={"format": "pt", **(metadata or {})})


def make_project(root: Path, *, base: str = "org/tiny-base", repo_id: str = REPO) -> Path:
    """A manifest and a real (tiny) PEFT LoRA adapter folder: config, safetensors, tokenizer."""
    adapter = root / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": base, "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
        "target_modules": ["q_proj"], "task_type": "CAUSAL_LM",
    }))
    save_adapter_weights(adapter / "adapter_model.safetensors")
    (adapter / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"tok{i}": i for i in range(50)}}}))
    (root / "hubkit.yaml").write_text(
        f"project:\n  name: tiny\n  license: apache-2.0\nartifacts:\n  tiny:\n    kind: adapter\n    path: adapter\n"
        f"    repo_id: {repo_id}\n    base_model: {base}\n"
    )
    return root / "hubkit.yaml"


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "proj")


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN, record=True) as h:
        yield h


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)


@pytest.fixture
def no_retry_wait(monkeypatch):
    """huggingface_hub retries a dead connection five times with 1-8 s waits; the tests need the
    outcome, not the waiting. Only its own module's clock is replaced."""
    import types

    from huggingface_hub.utils import _http

    monkeypatch.setattr(_http, "time", types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")} | {"sleep": lambda s: None}))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert TOKEN not in out + err and LEAK not in out + err, "a token reached the output"
    return code, out, err


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def api(url: str):
    from huggingface_hub import HfApi

    return HfApi(endpoint=url, token=TOKEN)


def remote_files(url: str, repo: str = REPO) -> dict[str, bytes]:
    from huggingface_hub import hf_hub_download

    from hubkit.publish import hub_session

    with hub_session(url):
        out = {}
        for name in api(url).list_repo_files(repo):
            out[name] = Path(hf_hub_download(repo, name, endpoint=url, token=TOKEN)).read_bytes()
        return out


def refs(url: str, repo: str = REPO):
    from hubkit.publish import hub_session

    with hub_session(url):
        return api(url).list_repo_refs(repo), api(url).repo_info(repo).sha


# -- 1. secrets where the old scan did not look ---------------------------------------------------


def write_safetensors_raw(path: Path, header: bytes, data: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


@pytest.mark.parametrize("hide", ["metadata", "escaped-metadata", "after-tensors"])
def test_token_in_safetensors_is_refused_before_anything_is_sent(project, hub, capsys, hide):
    weights = project.parent / "adapter" / "adapter_model.safetensors"
    if hide == "metadata":
        save_adapter_weights(weights, metadata={"note": f"trained with {LEAK}"})
        where = "in the safetensors metadata, key 'note'"
    else:
        data = np.zeros(32, np.float32).tobytes()
        tensors = {TENSOR_A: {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}}
        if hide == "escaped-metadata":
            # A hand-written header can spell the token with JSON escapes: "\u0068f_..." is "hf_...".
            header = json.dumps({"__metadata__": {"format": "pt", "x": "placeholder"}, **tensors}).encode()
            header = header.replace(b"placeholder", b"\\u0068" + LEAK[1:].encode())
            where = "in the safetensors metadata, key 'x'"
        else:
            header = json.dumps({"__metadata__": {"format": "pt"}, **tensors}).encode()
            data += b"padding " + LEAK.encode()  # bytes no tensor claims
            where = "outside every tensor"
        write_safetensors_raw(weights, header, data)
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    assert code == 1 and out == ""
    (line,) = errors(err)
    assert line.startswith("error: adapter_model.safetensors: contains what looks like a secret, Hugging Face token (")
    assert where in line and line.endswith("refusing to publish")
    assert hub.requests == []  # refused before the Hub was asked anything


def test_tensor_bytes_are_not_read_so_weights_never_look_like_secrets(project, hub, capsys):
    """Weights are arbitrary bytes: a tensor whose bytes happen to spell a token is not a leak,
    and the scan never reads the tensors (header only)."""
    from safetensors.numpy import save_file

    weights = project.parent / "adapter" / "adapter_model.safetensors"
    spelled = np.frombuffer(LEAK.encode().ljust(64, b"x"), dtype=np.float32).reshape(4, 4)
    save_file({TENSOR_A: spelled, TENSOR_B: np.zeros((8, 4), np.float32)}, str(weights))
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url, "--dry-run")
    assert code == 0, err


def test_token_in_a_large_tokenizer_json_across_a_chunk_boundary(project, hub, capsys):
    """Real tokenizer.json files are 9-17 MB: the old scan skipped files of 5 MB or more."""
    tok = project.parent / "adapter" / "tokenizer.json"
    body = json.dumps({"model": {"vocab": {f"tok{i:07d}": i for i in range(330_000)}}}).encode()
    assert len(body) > 6_000_000
    at = 5 * CHUNK - 7  # the token straddles the boundary between the 5th and 6th chunk
    tok.write_bytes(body[:at] + LEAK.encode() + body[at:])
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    assert code == 1
    (line,) = errors(err)
    assert line == f"error: tokenizer.json: contains what looks like a secret, Hugging Face token (at byte {at:,}); refusing to publish"
    assert hub.requests == []


@pytest.mark.parametrize(
    "name, text, kind",
    [
        ("tokenizer_config.json", '{"aws": "AKIAIOSFODNN7EXAMPLE"}', "AWS access key id"),
        ("special_tokens_map.json", '{"k": "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn..."}', "private key"),
        ("added_tokens.json", '{"key": "AIzaSyA1234567890abcdefghijklmnopqrstuv"}', "Google Cloud API key"),
        ("chat_template.jinja", "{# ghp_" + "a1" * 18 + " #}", "GitHub token"),
    ],
)
def test_cloud_keys_and_private_keys_are_refused(project, hub, capsys, name, text, kind):
    (project.parent / "adapter" / name).write_text(text)
    code, _, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url, "--dry-run")
    assert code == 1
    (line,) = errors(err)
    assert line.startswith(f"error: {name}: contains what looks like a secret, {kind} (")
    assert hub.requests == []


# -- 3. the hash cache sees a same-size edit whose mtime was put back ----------------------------


def test_same_size_edit_with_restored_mtime_is_published(project, hub, capsys):
    assert run(capsys, "publish", "-m", project, "--endpoint", hub.url)[0] == 0
    weights = project.parent / "adapter" / "adapter_model.safetensors"
    before = weights.stat()
    save_adapter_weights(weights, seed=1)  # other numbers, same shapes: same size
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    assert code == 0, err
    assert "1 changed" in err and "~ adapter_model.safetensors" in err
    assert out.split("\t")[0] == REPO and out.strip().split("\t")[1] != "unchanged"
    assert remote_files(hub.url)["adapter_model.safetensors"] == weights.read_bytes()


def test_hash_cache_trusts_a_stamp_only_when_nothing_changed(tmp_path):
    """The cache answers without reading the file while its stamp holds, and reads it again after
    an edit that kept size and mtime (ctime moved), or when the file was replaced (new inode)."""
    from hubkit.publish import HashCache

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    cache = HashCache(tmp_path / "cache.json")
    real = cache.get(f)[0]
    entry = cache.data[str(f.resolve())]
    entry["hashed_at_ns"] += 10**12  # as if hashed long after the last change: not "racy"
    entry["sha256"] = "cached"
    assert cache.get(f)[0] == "cached"  # trusted: not read again
    st = f.stat()
    f.write_bytes(b"b" * 100)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.get(f)[0] not in ("cached", real)
    entry = cache.data[str(f.resolve())]
    entry["hashed_at_ns"] += 10**12
    entry["sha256"] = "cached"
    other = tmp_path / "w2.bin"
    other.write_bytes(b"b" * 100)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, f)  # same size, same mtime, another inode
    assert cache.get(f)[0] != "cached"


# -- 4. a tag that failed after its commit landed --------------------------------------------------


def test_failed_tag_is_reported_truthfully_and_made_by_the_republish(project, tmp_path, capsys):
    with LocalHub(tmp_path / "hubt", token=TOKEN, record=True, faults={"status": {r"POST /api/models/.*/tag/": [500]}}) as hub:
        code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
        # LocalHub answers an injected fault without reading the request's body, which then
        # garbles the next request on that keep-alive connection: start a fresh one.
        from huggingface_hub import close_session

        close_session()
        assert code == 3
        (line,) = errors(err)
        tags, head = refs(hub.url)
        assert f"committed {head[:8]} ({head}), but the tag was not made" in line
        assert "the files are published, the tag is missing" in line and "Nothing partial" not in err
        assert "hint: Run `hubkit publish` again: it sees the untagged commit and makes the missing tag." in err
        assert tags.tags == [] and "adapter_model.safetensors" in remote_files(hub.url)
        code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
        assert code == 0, err
        assert out == f"{REPO}\tunchanged\n"  # no new commit...
        tags, head_after = refs(hub.url)
        assert head_after == head and [t.target_commit for t in tags.tags] == [head]  # ...but the tag
        assert f"{REPO}: tagged {head[:8]} {tags.tags[0].name} (the tag an earlier publish could not make)" in err
        # and a third publish has nothing left to do
        code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
        assert code == 0 and "tagged" not in err and len(refs(hub.url)[0].tags) == 1


@pytest.mark.parametrize("hub_answers_after", [True, False])
def test_connection_lost_after_the_commit_landed(project, hub, capsys, monkeypatch, hub_answers_after):
    """The commit request reached the Hub, then the connection broke. When the Hub still answers,
    hubkit looks and says the commit landed (sha); when it does not, it says it cannot know, and
    the republish finds the commit by its publish record and tags it."""
    import httpx2
    from huggingface_hub import HfApi

    real_commit, real_info = HfApi.create_commit, HfApi.repo_info
    state = {"broken": False}

    def commit_then_break(self, *a, **k):
        real_commit(self, *a, **k)
        state["broken"] = True
        raise httpx2.RemoteProtocolError("Server disconnected without sending a response.")

    def info(self, *a, **k):
        if state["broken"] and not hub_answers_after:
            raise httpx2.ConnectError("[Errno 111] Connection refused")
        return real_info(self, *a, **k)

    monkeypatch.setattr(HfApi, "create_commit", commit_then_break)
    monkeypatch.setattr(HfApi, "repo_info", info)
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    monkeypatch.setattr(HfApi, "create_commit", real_commit)
    monkeypatch.setattr(HfApi, "repo_info", real_info)
    assert code == 3
    (line,) = errors(err)
    tags, head = refs(hub.url)
    if hub_answers_after:
        assert f"the commit landed as {head[:8]} ({head})" in line and "the tag is missing" in line
    else:
        assert "whether the commit landed is unknown" in line
    assert tags.tags == []
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    assert code == 0 and out == f"{REPO}\tunchanged\n", err
    tags, head_after = refs(hub.url)
    assert head_after == head and [t.target_commit for t in tags.tags] == [head]


# -- 5. an unreachable, a hanging and a dying hub --------------------------------------------------


@pytest.fixture
def online(monkeypatch):
    """HF_HUB_OFFLINE unset, as on a user's machine."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_dry_run_with_the_hub_unreachable_is_one_line(project, capsys, online):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", url, "--dry-run")
    assert code == 3 and out == ""
    assert err.splitlines()[0].startswith("rendered ") and err.splitlines()[0].endswith("(there was no card to review; read it there)")
    assert err.splitlines()[1:] == [
        f"error: cannot reach the Hub at {url}: connection refused; nothing was sent",
        "hint: Check --endpoint (or HF_ENDPOINT) and the network, then run the same command again; for a local hub start "
        "`hubkit hub serve` (HF_HUB_ETAG_TIMEOUT sets how long to wait for an answer).",
    ]


def test_a_hub_that_never_answers_times_out_in_one_line(project, capsys, online, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        code, out, err = run(capsys, "publish", "-m", project, "--endpoint", url, "--dry-run")
    assert code == 3 and time.monotonic() - t0 < 30
    (line,) = errors(err)
    assert line == f"error: cannot reach the Hub at {url}: no answer in time (ReadTimeout); nothing was sent"


def start_hub(root: Path, faults: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, HUBKIT_HUB_TOKEN=TOKEN)
    env.pop("HUBKIT_HUB_FAULTS", None)
    if faults:
        env["HUBKIT_HUB_FAULTS"] = json.dumps(faults)
    proc = subprocess.Popen([sys.executable, "-m", "hubkit", "hub", "serve", "--root", str(root), "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("dies_on, phase", [(r"PUT /lfs-upload/", "while uploading files"), (r"POST /api/models/.*/commit/", "while committing")])
def test_hub_killed_mid_publish_says_what_was_committed(project, tmp_path, capsys, no_retry_wait, dies_on, phase):
    root = tmp_path / "hubk"
    proc, url = start_hub(root, {"exit_on": dies_on})
    try:
        code, out, err = run(capsys, "publish", "-m", project, "--endpoint", url)
        assert proc.wait(timeout=30) == 17  # the server really died there
    finally:
        proc.kill()
    assert code == 3 and out == ""
    (line,) = errors(err)
    assert line.startswith(f"error: {REPO}: lost the Hub at {url}: ")
    if phase == "while uploading files":
        assert line.endswith(f"{phase}; nothing was committed to {REPO}")
    else:  # the commit request was under way: hubkit cannot know, and says so
        assert f"{phase}; whether the commit landed is unknown" in line
    proc, url = start_hub(root)
    try:
        from hubkit.publish import hub_session

        with hub_session(url):
            assert api(url).list_repo_files(REPO) == [".gitattributes"]  # nothing half-committed
        code, out, err = run(capsys, "publish", "-m", project, "--endpoint", url)
        assert code == 0, err
        files = remote_files(url)
        assert files["adapter_model.safetensors"] == (project.parent / "adapter" / "adapter_model.safetensors").read_bytes()
        assert len(refs(url)[0].tags) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- 6. two publishes creating one new repo --------------------------------------------------------


@pytest.mark.parametrize("other_commits", [True, False])
def test_repo_created_concurrently_is_not_a_crash(project, hub, capsys, monkeypatch, other_commits):
    """Between this publish's plan (no repo yet) and its create_repo, another publish creates
    the repo (and maybe commits the same files). The Hub answers 409, whose body has no `url`:
    that is fine, the plan is made again against what is there."""
    from huggingface_hub import HfApi

    from hubkit.manifest import load_manifest
    from hubkit.publish import publish

    real_create = HfApi.create_repo
    raced = []

    def create_after_someone_else(self, repo_id, **kwargs):
        if not raced:
            raced.append(repo_id)
            if other_commits:
                publish(load_manifest(project), endpoint=hub.url, token=TOKEN)
            else:
                real_create(self, repo_id, **kwargs)
        return real_create(self, repo_id, **kwargs)

    monkeypatch.setattr(HfApi, "create_repo", create_after_someone_else)
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    assert code == 0, err
    assert raced == [REPO] and f"{REPO}: created meanwhile by another publish" in err
    assert hub.requests.count("POST /api/repos/create") == 2  # theirs, then ours (409)
    tags, head = refs(hub.url)
    if other_commits:
        assert out == f"{REPO}\tunchanged\n" and "already holds these files" in err
    else:
        assert out == f"{REPO}\t{head}\n"
    assert [t.target_commit for t in tags.tags] == [head]
    assert remote_files(hub.url)["adapter_model.safetensors"] == (project.parent / "adapter" / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize("same_files", [True, False])
def test_another_publish_committing_first_is_fine_when_it_sent_the_same_files(project, hub, capsys, monkeypatch, same_files):
    """Both publishes planned against the same head; the other commits first, so this commit is
    refused (412). When the repo now holds exactly these files, that is success; otherwise the
    412 stands as one line, and nothing of ours was committed."""
    from huggingface_hub import HfApi

    from hubkit.manifest import load_manifest
    from hubkit.publish import publish

    weights = project.parent / "adapter" / "adapter_model.safetensors"
    if not same_files:  # (with the same files: both create the repo, every file is new)
        assert run(capsys, "publish", "-m", project, "--endpoint", hub.url)[0] == 0
        save_adapter_weights(weights, seed=2)  # a change for both publishes to send
    real_commit = HfApi.create_commit
    raced = []

    def someone_commits_first(self, *a, **k):
        if not raced:
            raced.append(1)
            if not same_files:
                save_adapter_weights(weights, seed=3)
            publish(load_manifest(project), endpoint=hub.url, token=TOKEN)
            if not same_files:
                save_adapter_weights(weights, seed=2)
        return real_commit(self, *a, **k)

    monkeypatch.setattr(HfApi, "create_commit", someone_commits_first)
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    tags, head = refs(hub.url)
    if same_files:
        assert code == 0 and out == f"{REPO}\tunchanged\n", err
        assert f"{REPO}: another publish committed these same files meanwhile ({head[:8]}): nothing to commit" in err
        assert remote_files(hub.url)["adapter_model.safetensors"] == weights.read_bytes()
    else:
        assert code == 3
        (line,) = errors(err)
        assert line.startswith(f"error: {REPO}: ") and "(HTTP 412) while committing; nothing was committed to" in line
        assert "hint: The repo changed while publishing (someone committed); run `hubkit publish` again to re-plan." in err
        assert remote_files(hub.url)["adapter_model.safetensors"] != weights.read_bytes()  # theirs, not overwritten
    assert len(tags.tags) == (1 if same_files else 2)  # the other one's (and the first publish's)


# -- 8. a run record that lost its results file ----------------------------------------------------


def make_record(project: Path, run_id: str = "20261129T000000-tiny-s") -> Path:
    rec = project.parent / "runs" / run_id
    rec.mkdir(parents=True)
    results = {"results": {"arc_challenge": {"acc,none": 0.5, "acc_stderr,none": 0.05}}, "n-shot": {"arc_challenge": 0}, "versions": {"arc_challenge": 1}}
    (rec / "results.json").write_text(json.dumps(results))
    (rec / "samples_arc_challenge.jsonl").write_text("{}\n")
    (rec / "provenance.json").write_text(json.dumps({
        "run_id": run_id, "status": "ok", "setup": "s", "subject": "tiny", "strategy": "fp32-lora", "started_at": "2026-11-29T00:00:00",
        "results_files": ["results.json"], "samples_files": {"arc_challenge": "samples_arc_challenge.jsonl"},
    }))
    with project.open("a") as fh:
        fh.write("evals:\n  s:\n    tasks: [arc_challenge]\n    env: current\n")
    return rec


@pytest.mark.parametrize("gone", ["results.json", "samples_arc_challenge.jsonl"])
def test_run_record_missing_a_file_is_one_line_naming_run_and_file(project, hub, capsys, gone):
    rec = make_record(project)
    (rec / gone).unlink()
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url)
    assert code == 1 and out == ""
    (line,) = errors(err)
    assert line == f"error: run {rec.name}: {gone} is missing from {rec} (its provenance.json names it); nothing was sent"
    assert hub.requests == []
    assert (rec / "provenance.json").is_file()  # the record itself is left as it was


def test_publish_refuses_an_artifact_path_outside_the_project(project, tmp_path, hub, capsys):
    """A relative path that climbs out of the manifest's folder (here through a symlink) would
    send files from elsewhere on the disk: refused before the Hub is asked."""
    elsewhere = tmp_path / "elsewhere"
    (project.parent / "adapter").rename(elsewhere)
    (project.parent / "adapter").symlink_to(elsewhere)
    code, out, err = run(capsys, "publish", "-m", project, "--endpoint", hub.url, "--dry-run")
    assert code == 2
    (line,) = errors(err)
    assert line == (
        f"error: {project.resolve()}: artifacts.tiny.path: 'adapter' leads outside the manifest's folder through a symlink "
        f"(to {elsewhere.resolve()}); write it as an absolute path if that is where it is"
    )
    assert hub.requests == []
    project.write_text(project.read_text().replace("path: adapter", f"path: {elsewhere}"))
    assert run(capsys, "publish", "-m", project, "--endpoint", hub.url, "--dry-run")[0] == 0  # explicit: allowed
