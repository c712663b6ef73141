"""The command line's error table: whatever exception reaches `hubkit`'s entry point becomes one
message that names the file, field, repo, endpoint or port at fault, a hint with the next step,
and an exit code from a small documented set (`EXIT_CODES`).

hubkit's own errors (`HubkitError`) already say all that; this table covers what the libraries
underneath raise: OS errors by errno (a full disk, a read-only folder, a port in use), network
failures (httpx/requests/urllib), huggingface_hub's validation and HTTP errors, pydantic, YAML,
JSON, text that is not UTF-8, safetensors and Jinja errors. Anything else is an internal error:
one line naming the exception and where it was raised, and a request to report it. Every line
passes through `hubkit.secrets.redact_text`, so a token in an exception's message never reaches
the terminal. `HUBKIT_DEBUG=1` adds the (also redacted) traceback.

Library modules are looked up in `sys.modules`, never imported here: an exception of a library
that was never imported cannot have been raised, and `hubkit --help` stays instant.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import TracebackType
from typing import Callable
from urllib.parse import urlsplit

from .errors import HubkitError
from .secrets import redact_text

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_NETWORK = 3
EXIT_SYSTEM = 4
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`hubkit runs | head`)

# The documented exit codes, in the order `hubkit --help` and the README list them.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_FAILED, "failed or refused: a stale card, every eval strategy failed, a secret in a file"),
    (EXIT_INPUT, "bad input: usage, the manifest, a model folder, a data, results or template file"),
    (EXIT_NETWORK, "the Hub or network: unreachable, timed out, or refused the request (401, 404...)"),
    (EXIT_SYSTEM, "this machine: disk full, read-only, permission denied, port in use, memory"),
    (EXIT_INTERNAL, "internal error: a bug in hubkit (rerun with HUBKIT_DEBUG=1 and report it)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)

INTERNAL_HINT = "This is a bug in hubkit: run the same command with HUBKIT_DEBUG=1 for the traceback, and report it."


@dataclass(frozen=True)
class Explained:
    """What the CLI prints for an exception: `lines` (each printed as `error: ...`), an optional
    `hint`, and the process exit code."""

    lines: tuple[str, ...]
    hint: str | None
    exit_code: int

    def render(self) -> str:
        """The text for stderr: `error: ` lines then `hint: ` (secrets already redacted)."""
        out = [f"error: {line}" for line in self.lines]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out) + "\n"


def _explained(message: str, hint: str | None, code: int) -> Explained:
    lines = tuple(redact_text(line) for line in (message.splitlines() or [""]))
    return Explained(lines, redact_text(hint) if hint else None, code)


def explain(exc: BaseException) -> Explained:
    """The one-line (per problem) explanation of `exc`, its hint and exit code (see `_explain`).
    Never raises: should the table itself fail, the exception is an internal error."""
    try:
        return _explain(exc)
    except Exception:  # noqa: BLE001 - the last line of defence against a traceback
        return _explained(f"internal error: {type(exc).__name__}", INTERNAL_HINT, EXIT_INTERNAL)


def _explain(exc: BaseException) -> Explained:
    """The one-line (per problem) explanation of `exc`, its hint and exit code.

    hubkit's own errors keep their message and hint; one raised while handling a network or
    system failure (a `raise PublishError(...) from None` inside `except ConnectError`) takes
    that failure's exit code. Other exceptions are looked up in the table, then along their
    causes (huggingface_hub wraps a failed upload in a RuntimeError); what is in neither is an
    internal error."""
    if isinstance(exc, HubkitError):
        code = exc.exit_code
        if code == EXIT_FAILED:
            for cause in _causes(exc, include_self=False):
                found = _lookup(cause)
                if found is not None and found.exit_code in (EXIT_NETWORK, EXIT_SYSTEM):
                    code = found.exit_code
                    break
        return _explained(str(exc), exc.hint, code)
    if isinstance(exc, KeyboardInterrupt):
        return _explained("interrupted", None, EXIT_INTERRUPTED)
    for cause in _causes(exc, include_self=True):
        if isinstance(cause, HubkitError):
            return _explain(cause)
        found = _lookup(cause)
        if found is not None:
            return found
    return _internal(exc)


def _causes(exc: BaseException, *, include_self: bool):
    seen: set[int] = set()
    cur = exc if include_self else (exc.__cause__ or exc.__context__)
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _lookup(exc: BaseException) -> Explained | None:
    for handler in _TABLE:
        found = handler(exc)
        if found is not None:
            return found
    return None


def _internal(exc: BaseException) -> Explained:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = _hubkit_frame(exc)
    line = f"internal error: {type(exc).__name__}" + (f": {text[:300]}" if text else "") + (f" (at {where})" if where else "")
    return _explained(line, INTERNAL_HINT, EXIT_INTERNAL)


# -- where: the file, endpoint or port an exception is about ---------------------------------------------------


def _frames(tb: TracebackType | None) -> list:
    """Frames of a traceback, innermost first."""
    out = []
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out[::-1]


_WRITE_NAMES = ("dst", "dest", "target", "out", "path", "file", "filename", "fname", "p")
_READ_NAMES = ("src", "source", "path", "file", "filename", "fname", "p")
# Frames of the command layer hold every option (an --out, a --manifest) whatever failed below
# them: a file named there would be a guess.
_COMMAND_LAYER = (str(Path(__file__).with_name("cli.py")), f"{os.sep}click{os.sep}")


def _file_of(exc: BaseException, *, writing: bool) -> str | None:
    """The file an exception is about when it does not say (a write that hit ENOSPC, a decode
    error, a JSON or YAML parse): in the innermost frame that has one, an open file object of
    the right direction, the Path a pathlib method was called on, or a path variable by a
    telling name (`dst` for a write, `src` for a read: `shutil.copyfile` has both)."""
    names = _WRITE_NAMES if writing else _READ_NAMES
    for frame in _frames(exc.__traceback__):
        code = frame.f_code.co_filename
        if code.startswith(_COMMAND_LAYER[0]) or _COMMAND_LAYER[1] in code:
            continue
        local = frame.f_locals
        for value in local.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                try:
                    right_way = value.writable() if writing else value.readable()
                except ValueError:  # closed: its mode still says
                    mode = getattr(value, "mode", "")
                    right_way = any(c in mode for c in "wax+") if writing else "r" in mode or "+" in mode
                if right_way:
                    return value.name
        if isinstance(local.get("self"), PurePath):
            return str(local["self"])
        for name in names:
            value = local.get(name)
            if isinstance(value, PurePath):
                return str(value)
    return None


def _hubkit_frame(exc: BaseException) -> str | None:
    """`hubkit/module.py:LINE` of the innermost hubkit frame, for a bug report."""
    package = Path(__file__).resolve().parent
    tb, found = exc.__traceback__, None
    while tb is not None:
        try:
            rel = Path(tb.tb_frame.f_code.co_filename).resolve().relative_to(package)
            found = f"hubkit/{rel.as_posix()}:{tb.tb_lineno}"
        except ValueError:
            pass
        tb = tb.tb_next
    return found


def _port_of(exc: BaseException) -> str | None:
    for frame in _frames(exc.__traceback__):
        local = frame.f_locals
        for name in ("server_address", "address", "sockaddr", "addr"):
            value = local.get(name)
            if isinstance(value, tuple) and len(value) >= 2 and isinstance(value[1], int):
                return f"{value[1]} on {value[0] or '0.0.0.0'}"
        if isinstance(local.get("port"), int):
            host = local.get("host")
            return f"{local['port']}" + (f" on {host}" if isinstance(host, str) else "")
    return None


def _origin(url: str | None) -> str | None:
    """scheme://host[:port] of a URL: the endpoint, without a path or query that may carry a
    signed token."""
    if not url:
        return None
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _url_of(exc: BaseException) -> str | None:
    """The endpoint a network error was talking to, from its request or the frames' locals."""
    for obj in (exc, getattr(exc, "response", None)):
        try:
            request = getattr(obj, "request", None)  # httpx raises RuntimeError when unset
        except Exception:  # noqa: BLE001
            request = None
        found = _origin(getattr(request, "url", None))
        if found:
            return found
    pool = getattr(exc, "pool", None)  # urllib3
    if pool is not None and getattr(pool, "host", None):
        return f"{getattr(pool, 'scheme', 'http')}://{pool.host}" + (f":{pool.port}" if getattr(pool, "port", None) else "")
    for frame in _frames(exc.__traceback__):
        for name in ("url", "fullurl", "endpoint", "base_url"):
            value = frame.f_locals.get(name)
            found = _origin(getattr(value, "full_url", value) if value is not None else None)
            if found:
                return found
    return None


# -- the table -------------------------------------------------------------------------------------------------


def _module_classes(module: str, *names: str) -> tuple[type, ...]:
    mod = sys.modules.get(module)
    return tuple(c for n in names if isinstance(c := getattr(mod, n, None), type))


def _hf_hub(exc: BaseException) -> Explained | None:
    """huggingface_hub's own errors: repo ids it refuses, offline mode, HTTP answers."""
    errs = sys.modules.get("huggingface_hub.errors")
    if errs is None:
        return None
    if isinstance(exc, errs.HFValidationError):
        return _explained(
            f"invalid Hub repo id: {str(exc).splitlines()[0]}",
            "A repo id is owner/name: letters, digits, '-', '_' and '.', not starting or ending with '-' or '.'. "
            "Fix repo_id in hubkit.yaml (`hubkit validate` checks every one) or the --repo-id you passed.",
            EXIT_INPUT,
        )
    if isinstance(exc, errs.OfflineModeIsEnabled):
        return _explained(f"HF_HUB_OFFLINE is set: {str(exc).splitlines()[0] if str(exc) else 'the Hub cannot be reached'}",
                          "Unset HF_HUB_OFFLINE, or point --endpoint (HF_ENDPOINT) at a local hub: `hubkit hub serve`.", EXIT_NETWORK)
    if isinstance(exc, errs.LocalEntryNotFoundError):
        return _explained(
            "not in the local Hugging Face cache, and the Hub cannot be reached (or HF_HUB_OFFLINE is set)",
            "Download it first (`hf download`), unset HF_HUB_OFFLINE, or pass a local folder.", EXIT_NETWORK,
        )
    if isinstance(exc, errs.HfHubHTTPError):
        return _hub_http(exc)
    return None


def _repo_of(exc) -> str | None:
    repo = getattr(exc, "repo_id", None)
    if repo:
        return repo
    try:
        path = urlsplit(str(exc.response.request.url)).path.split("/")
    except Exception:  # noqa: BLE001
        return None
    # /api/{models,datasets,spaces}/owner/name/..., or /owner/name/resolve/...
    if len(path) > 4 and path[1] == "api" and path[2] in ("models", "datasets", "spaces"):
        return f"{path[3]}/{path[4]}"
    return None


def _hub_http(exc) -> Explained:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    origin = _url_of(exc) or "the Hub"
    repo = _repo_of(exc)
    about = f"{repo} on {origin}" if repo else origin
    server = (getattr(exc, "server_message", None) or "").strip().splitlines()
    detail = f": {server[0][:200]}" if server else ""
    if type(exc).__name__ == "GatedRepoError":
        return _explained(f"{about}: the repo is gated and this token has not been granted access (HTTP {status}){detail}",
                          "Request access on the repo's page, then use a token of that account (HF_TOKEN or `hf auth login`).", EXIT_NETWORK)
    if status == 401:
        return _explained(f"{about}: the Hub refused the token, or none was given (HTTP 401){detail}",
                          "Log in with `hf auth login`, or set HF_TOKEN to a valid token.", EXIT_NETWORK)
    if status == 403:
        return _explained(f"{about}: forbidden (HTTP 403){detail}",
                          "Use a token with write access to that namespace (a fine-grained token needs the repo's permission).", EXIT_NETWORK)
    if status == 404 or type(exc).__name__ in ("RepositoryNotFoundError", "RevisionNotFoundError", "RemoteEntryNotFoundError"):
        what = {"RevisionNotFoundError": "no such revision", "RemoteEntryNotFoundError": "no such file"}.get(type(exc).__name__, "not found (or not visible to this token)")
        return _explained(f"{about}: {what} (HTTP {status}){detail}", "Check the repo id and revision; for a private repo set HF_TOKEN.", EXIT_NETWORK)
    if status in (409, 412):
        return _explained(f"{about}: the repo changed while this ran (HTTP {status}){detail}", "Run the same command again: it plans against what is there now.", EXIT_NETWORK)
    if status == 413:
        return _explained(f"{about}: the Hub refused a request as too large (HTTP 413){detail}", "Split large files (e.g. --shard-size for merges), then run again.", EXIT_NETWORK)
    if status == 429:
        return _explained(f"{about}: rate limited (HTTP 429){detail}", "Wait a few minutes, then run the same command again.", EXIT_NETWORK)
    if status is not None and status >= 500:
        return _explained(f"{about}: the Hub failed (HTTP {status}){detail}", "It was retried; try again later.", EXIT_NETWORK)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _explained(f"{about}: {first[:200]}", None, EXIT_NETWORK)


def _transport_classes() -> tuple[type, ...]:
    classes: tuple[type, ...] = ()
    for module in ("httpx2", "httpx", "httpcore"):
        classes += _module_classes(module, "TransportError", "TimeoutException", "NetworkError", "RemoteProtocolError", "ProxyError")
    classes += _module_classes("requests.exceptions", "ConnectionError", "Timeout", "ChunkedEncodingError")
    classes += _module_classes("urllib3.exceptions", "HTTPError")
    classes += _module_classes("urllib.error", "URLError")
    return classes


def _why_unreachable(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).lower()
    reason = getattr(exc, "reason", None)  # urllib.error.URLError wraps the socket error
    if isinstance(reason, BaseException):
        return _why_unreachable(reason)
    if "timeout" in name.lower() or isinstance(exc, TimeoutError):
        return f"no answer in time ({name})"
    if isinstance(exc, ConnectionRefusedError) or "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text or "name resolution" in text:
        return "the host name does not resolve"
    if "ssl" in text or "certificate" in text:
        return f"TLS error ({name})"
    if "RemoteProtocol" in name or "disconnected" in text or "reset" in text or "closed" in text or isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return f"the server closed the connection ({name})"
    return name


def _network(exc: BaseException) -> Explained | None:
    transport = _transport_classes()
    socket_level = isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ == "gaierror"
    if not (transport and isinstance(exc, transport)) and not socket_level:
        return None
    where = _url_of(exc)
    if isinstance(exc, BrokenPipeError) and where is None:
        return None  # a pipe to a child process, not the network: an OS error
    return _explained(
        f"cannot reach {where or 'the server'}: {_why_unreachable(exc)}",
        "Check the endpoint (--endpoint or HF_ENDPOINT) and the network, then run the same command again; for a local hub, start `hubkit hub serve`.",
        EXIT_NETWORK,
    )


def _os_error(exc: BaseException) -> Explained | None:
    if not isinstance(exc, OSError):
        return None
    code = exc.errno
    writing = code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EROFS)
    # a copy or rename names both files (shutil: source first): a full disk is the destination's
    named = [exc.filename2, exc.filename] if writing else [exc.filename, exc.filename2]
    path = next((n for n in named if n not in (None, "")), None) or _file_of(exc, writing=writing)
    at = f"{path}: " if path is not None else ""
    what = exc.strerror or str(exc) or type(exc).__name__
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        where = f" while writing {path}" if path is not None else ""
        kind = "disk quota exceeded" if code != errno.ENOSPC else "disk full"
        return _explained(f"{kind}{where}", "Free some space on that disk (or write somewhere else), then run the same command again.", EXIT_SYSTEM)
    if code == errno.EROFS:
        return _explained(f"{at}read-only file system", "Write to a folder on a writable disk (--out, --runs-dir), or remount it read-write.", EXIT_SYSTEM)
    if code in (errno.EACCES, errno.EPERM):
        return _explained(f"{at}permission denied", "Check the permissions of that file and its folder, or write somewhere else.", EXIT_SYSTEM)
    if code == errno.EADDRINUSE:
        port = _port_of(exc)
        return _explained(f"port {port} is in use" if port else "the address is in use", "Stop what is using it, or pick another port with --port.", EXIT_SYSTEM)
    if code in (errno.EMFILE, errno.ENFILE):
        return _explained(f"{at}too many open files", "Raise the limit (`ulimit -n 4096`) and run again.", EXIT_SYSTEM)
    if code == errno.ENOMEM:
        return _explained("out of memory", "Close other programs or use a machine with more memory.", EXIT_SYSTEM)
    if code == errno.EIO:
        return _explained(f"{at}input/output error", "The disk or network file system failed: check it (dmesg), then run again.", EXIT_SYSTEM)
    inputs = {
        errno.ENOENT: ("no such file or directory", "Check the path."),
        errno.ENOTDIR: ("a part of the path is not a folder", "Check the path."),
        errno.EISDIR: ("is a folder, expected a file", "Give the file, not its folder."),
        errno.ELOOP: ("too many levels of symbolic links (a symlink loop?)", "Fix the link (`ls -l` shows where it points)."),
        errno.ENAMETOOLONG: ("file name too long", "Use a shorter path."),
        errno.ENOTEMPTY: ("folder not empty", "Move its contents away, or choose another folder."),
        errno.EEXIST: ("already exists", "Remove it, or choose another name."),
    }
    if code in inputs:
        msg, hint = inputs[code]
        return _explained(f"{at}{msg}", hint, EXIT_INPUT)
    return _explained(f"{at}{what}", None, EXIT_SYSTEM)


def _unicode(exc: BaseException) -> Explained | None:
    if not isinstance(exc, UnicodeDecodeError):
        return None
    path = _file_of(exc, writing=False)
    data = exc.object if isinstance(exc.object, (bytes, bytearray)) else b""
    line = data[: exc.start].count(b"\n") + 1
    byte = f"0x{data[exc.start]:02x}" if exc.start < len(data) else "a byte"
    return _explained(f"{path + ': ' if path else ''}not UTF-8 text ({byte} on line {line})", "Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).", EXIT_INPUT)


def _json(exc: BaseException) -> Explained | None:
    import json

    if not isinstance(exc, json.JSONDecodeError):
        return None
    path = _file_of(exc, writing=False)
    return _explained(f"{path + ': ' if path else ''}not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", "The file is damaged or truncated: restore or regenerate it.", EXIT_INPUT)


def _yaml(exc: BaseException) -> Explained | None:
    yaml_error = _module_classes("yaml", "YAMLError")
    if not yaml_error or not isinstance(exc, yaml_error):
        return None
    mark = getattr(exc, "problem_mark", None)
    name = getattr(mark, "name", None)
    path = name if name and not name.startswith("<") else _file_of(exc, writing=False)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return _explained(f"{path + ': ' if path else ''}not valid YAML{where}: {problem}", "Fix the YAML at that place.", EXIT_INPUT)


def _pydantic(exc: BaseException) -> Explained | None:
    cls = _module_classes("pydantic", "ValidationError") + _module_classes("pydantic_core", "ValidationError")
    if not cls or not isinstance(exc, cls):
        return None
    errors = exc.errors()
    path = _file_of(exc, writing=False)
    first = errors[0] if errors else {}
    loc = ".".join(str(x) for x in first.get("loc", ())) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    prefix = f"{path}: " if path else f"{exc.title}: "
    return _explained(f"{prefix}{loc}: {first.get('msg', str(exc))}{more}", "The file does not have the expected fields: restore or regenerate it.", EXIT_INPUT)


def _safetensors(exc: BaseException) -> Explained | None:
    if type(exc).__name__ != "SafetensorError" and not isinstance(exc, _module_classes("huggingface_hub.errors", "SafetensorsParsingError")):
        return None
    path = _file_of(exc, writing=False)
    return _explained(f"{path + ': ' if path else ''}not a readable safetensors file ({str(exc).splitlines()[0][:200]})", "The file is damaged or truncated: download or save it again.", EXIT_INPUT)


def _jinja(exc: BaseException) -> Explained | None:
    cls = _module_classes("jinja2.exceptions", "TemplateError")
    if not cls or not isinstance(exc, cls):
        return None
    name = getattr(exc, "filename", None) or getattr(exc, "name", None)
    line = getattr(exc, "lineno", None)
    if not name:  # a runtime error (undefined variable): jinja puts the template's frames in the traceback
        for frame in _frames(exc.__traceback__):
            if frame.f_code.co_filename.endswith((".j2", ".jinja", ".md", ".html")):
                name, line = frame.f_code.co_filename, frame.f_lineno
                break
    where = f"{name}{f':{line}' if line else ''}: " if name else ""
    return _explained(f"{where}template error: {exc.message or type(exc).__name__}", "Fix the template (your --template-dir overrides hubkit's), then run again.", EXIT_INPUT)


def _memory(exc: BaseException) -> Explained | None:
    if not isinstance(exc, MemoryError):
        return None
    return _explained("out of memory", "Close other programs or use a machine with more memory (merges take --shard-size).", EXIT_SYSTEM)


# Order matters: huggingface_hub's HTTP errors are OSErrors and its offline error a
# ConnectionError, JSONDecodeError is a ValueError, requests' errors are OSErrors.
_TABLE: tuple[Callable[[BaseException], Explained | None], ...] = (
    _hf_hub, _network, _unicode, _json, _yaml, _pydantic, _safetensors, _jinja, _os_error, _memory,
)


# -- for the entry point ---------------------------------------------------------------------------------------


def debug_traceback(exc: BaseException) -> str:
    """The traceback of `exc` as Python prints it, with secrets redacted."""
    return redact_text("".join(traceback.format_exception(exc)))


def debug_enabled() -> bool:
    """True when HUBKIT_DEBUG asks for tracebacks (any value but '', '0', 'false', 'no')."""
    return os.environ.get("HUBKIT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def is_stdout_gone(exc: BaseException) -> bool:
    """True when `exc` is the broken pipe of a reader of stdout that went away (`| head`)."""
    if not isinstance(exc, BrokenPipeError):
        return False
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        return True
    return any(frame.f_code.co_name in ("echo", "_print_json") for frame in _frames(exc.__traceback__))


def exit_codes_help() -> str:
    """The exit-code table as `hubkit --help` shows it (one code per line)."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)
