"""How hubkit talks to a Hub (huggingface.co, a mirror, or hubkit's local server) as a client.

Everything goes through huggingface_hub: its cache, its revision handling, its token lookup.
Two rules are added on top:

- A loopback endpoint is not the network. `HF_HUB_OFFLINE=1` (which the tests and the demo set)
  is lifted for it, and Xet transfers (which the local server does not speak) are switched off.
- A repo id resolves to a snapshot folder *and* the commit it came from, so callers can record
  exactly what they used; the sha256 of LFS files comes from the cache's blob names for free.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ..errors import HubkitError

# What a model (base, adapter or checkpoint) is fetched with: weights, configs, tokenizer files.
# No pickled weights, no other formats.
MODEL_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja", "*.model", "*.txt", "*.tiktoken")

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def effective_endpoint(endpoint: str | None = None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def is_loopback(endpoint: str | None) -> bool:
    host = urlparse(endpoint or "").hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def hub_session(endpoint: str | None, *, error: type[HubkitError] = HubkitError, need_network: bool = True):
    """huggingface_hub settings for one operation against `endpoint` (default: HF_ENDPOINT).

    With `need_network` and HF_HUB_OFFLINE set for a remote endpoint, `error` is raised; without
    it, offline mode stays on and huggingface_hub answers from its cache."""
    from huggingface_hub import constants

    endpoint = effective_endpoint(endpoint)
    saved = (constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET)
    if is_loopback(endpoint):
        constants.HF_HUB_OFFLINE = False
        constants.HF_HUB_DISABLE_XET = True
    elif constants.HF_HUB_OFFLINE and need_network:
        raise error(
            f"HF_HUB_OFFLINE is set: cannot reach {endpoint}",
            hint="Unset HF_HUB_OFFLINE, or point --endpoint (HF_ENDPOINT) at a local hub: `hubkit hub serve`.",
            exit_code=3,  # the Hub cannot be reached, as the error table says of huggingface_hub's own offline error
        )
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET = saved


def looks_like_repo_id(ref: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", ref)) and not ref.startswith((".", "/", "~"))


@dataclass
class Source:
    """A model folder to read, and where it came from."""

    path: Path
    repo_id: str | None = None  # None: a local folder given as such
    revision: str | None = None  # what was asked for (branch, tag or commit)
    commit: str | None = None  # the commit the snapshot is, when it came from a Hub
    endpoint: str | None = None
    lfs_sha256: dict[str, str] = field(default_factory=dict)  # file -> sha256, from the cache's blob names

    def provenance(self) -> dict:
        if self.repo_id is None:
            return {"path": str(self.path)}
        out = {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit}
        if self.endpoint and self.endpoint != "https://huggingface.co":
            out["endpoint"] = self.endpoint
        return out


def resolve(
    ref: str | os.PathLike,
    *,
    revision: str | None = None,
    what: str = "model",
    allow_patterns: tuple[str, ...] | None = MODEL_PATTERNS,
    endpoint: str | None = None,
    error: type[HubkitError] = HubkitError,
) -> Source:
    """A local folder as is; otherwise `ref` is a Hub repo id downloaded (or found in the cache)
    with `snapshot_download` at `revision`. With HF_HUB_OFFLINE=1 and a remote endpoint only the
    cache answers, which is what an air-gapped machine wants."""
    p = Path(ref).expanduser()
    if p.is_dir():
        return Source(p)
    ref = str(ref)
    if p.exists() or not looks_like_repo_id(ref):
        raise error(f"{what} {ref}: no such folder", hint="Give a local folder or a Hub repo id like org/name.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    endpoint = effective_endpoint(endpoint)
    with hub_session(endpoint, error=error, need_network=False):
        try:
            folder = Path(snapshot_download(ref, revision=revision, allow_patterns=list(allow_patterns) if allow_patterns else None, endpoint=endpoint))
        except RepositoryNotFoundError:
            raise error(f"{what} {ref}: no such repo on {endpoint} (or the token cannot see it)", hint="Check the id; for a private repo set HF_TOKEN.") from None
        except RevisionNotFoundError:
            raise error(f"{what} {ref}: no revision {revision!r} on {endpoint}") from None
        except LocalEntryNotFoundError:
            raise error(
                f"{what} {ref}: not in the local Hugging Face cache and {endpoint} cannot be reached",
                hint="Download it first (`hf download`), unset HF_HUB_OFFLINE, or pass a local folder.",
            ) from None
        except HfHubHTTPError as exc:
            from ..secrets import redact_text

            raise error(f"{what} {ref}: {redact_text(str(exc).splitlines()[0])}") from None
    commit = folder.name if _HEX40.fullmatch(folder.name) else None
    return Source(folder, ref, revision, commit, endpoint, _blob_sha256(folder))


def _blob_sha256(folder: Path) -> dict[str, str]:
    """In huggingface_hub's cache a snapshot file links to `blobs/<etag>`, and an LFS file's etag
    is its sha256: the hash is known without reading the file."""
    out: dict[str, str] = {}
    for f in folder.rglob("*"):
        if f.is_symlink():
            name = Path(os.readlink(f)).name
            if _HEX64.fullmatch(name):
                out[f.relative_to(folder).as_posix()] = name
    return out
