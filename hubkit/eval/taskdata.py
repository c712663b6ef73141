"""Local data for lm-eval tasks whose data lives on the Hub.

An eval setup may say `data: {arc_challenge: {files: {test: arc/test.jsonl}}}`. hubkit then
writes a small task YAML that `include`s lm-eval's own config of that task, from the lm-eval
version installed in the eval environment, and replaces only where the documents come from. Prompt,
targets, metrics and few-shot handling stay the task's own.

The generated task gets its own name (`<task>_hubkit_local`): lm-eval before 0.4.10 indexes its
built-in tasks first and lets them win over a same-named task on the include path, so reusing the
name would silently evaluate the Hub data (or fail offline). Results are mapped back to the
original task name and marked as local data in the record and on the card.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import yaml

from ..errors import EvalError
from ..inspection import sha256_file
from ..manifest import EvalSetup, Manifest

SUFFIX = "_hubkit_local"
_SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}
_INCLUDE = re.compile(r"^include:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)


def local_name(task: str) -> str:
    return task + SUFFIX


def find_task_yaml(lm_eval_dir: str | Path | None, task: str) -> Path:
    """The YAML in lm-eval's task tree that defines `task` (by its `task:` line)."""
    if not lm_eval_dir:
        raise EvalError(
            f"cannot override the data of {task!r}: lm-eval is not installed in the eval environment",
            hint="Pin lm-eval in the setup (pins: {lm-eval: '==0.4.13'}) or install it.",
        )
    for fresh in (False, True):  # a stale cached index is rebuilt once
        index = _task_index(Path(lm_eval_dir).resolve(), rebuild=fresh)
        if task in index and Path(index[task]).is_file():
            return Path(index[task])
    raise EvalError(
        f"evals.*.data.{task}: lm-eval at {lm_eval_dir} has no task named {task!r}",
        hint="Data overrides apply to single lm-eval tasks (not groups); check the name with `lm-eval ls tasks`.",
    )


_TASK_LINE = re.compile(r"^task:\s*['\"]?([\w.\-]+)['\"]?\s*$", re.MULTILINE)


def _task_index(lm_eval_dir: Path, rebuild: bool = False) -> dict[str, str]:
    """task name -> YAML path for an lm-eval install, cached under $HUBKIT_HOME (an install does
    not change; a full scan reads ~10k files)."""
    from .envs import hubkit_home

    tasks_dir = lm_eval_dir / "tasks"
    try:
        stamp = tasks_dir.stat().st_mtime_ns
    except OSError:
        return {}
    key = hashlib.sha256(f"{tasks_dir.resolve()}|{stamp}".encode()).hexdigest()[:16]
    cache = hubkit_home() / "lm-eval-tasks" / f"{key}.json"
    if not rebuild:
        try:
            return json.loads(cache.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    index: dict[str, str] = {}
    for path in sorted(tasks_dir.rglob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for name in _TASK_LINE.findall(text):
            index.setdefault(name, str(path))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        tmp.replace(cache)
    except OSError:
        pass
    return index


def _config_chain(path: Path) -> list[Path]:
    """The YAML and the files it includes (recursively), which together define the task."""
    chain, todo = [], [path]
    while todo:
        p = todo.pop()
        if p in chain or not p.is_file():
            continue
        chain.append(p)
        for inc in _INCLUDE.findall(p.read_text(encoding="utf-8", errors="replace")):
            todo.append(Path(inc) if Path(inc).is_absolute() else p.parent / inc)
    return chain


def override_facts(manifest: Manifest, setup: EvalSetup, lm_eval_dir: str | None) -> dict[str, dict]:
    """Per overridden task: the source config (path, sha256 of it and its includes) and each
    local file with its sha256. Raises EvalError naming a missing file."""
    facts: dict[str, dict] = {}
    for task, override in setup.data.items():
        source = find_task_yaml(lm_eval_dir, task)
        files = {}
        for split, rel in override.files.items():
            path = manifest.resolve(rel)
            if not path.is_file():
                raise EvalError(f"evals.*.data.{task}.files.{split}: {path} does not exist", hint="Paths are relative to the manifest.")
            files[split] = {"path": str(path), "sha256": sha256_file(path)}
        facts[task] = {
            "lm_eval_task": local_name(task),
            "source_config": str(source),
            "source_sha256": {str(p): sha256_file(p) for p in _config_chain(source)},
            "format": override.format,
            "files": files,
        }
    return facts


def write_include_dir(dest: Path, facts: dict[str, dict], user_include: Path | None) -> Path:
    """Write the generated task YAMLs (and a copy of the setup's own include_path) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if user_include and user_include.is_dir():
        shutil.copytree(user_include, dest / "user", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for task, f in facts.items():
        config = {
            "include": f["source_config"],
            "task": f["lm_eval_task"],
            "task_alias": f"{task} (local data)",
            "tag": [],
            "dataset_path": f["format"],
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: v["path"] for split, v in f["files"].items()}},
        }
        for split, key in _SPLIT_KEYS.items():
            config[key] = split if split in f["files"] else None
        header = f"# Written by hubkit: lm-eval's {task} with its documents read from local files.\n"
        (dest / f"{f['lm_eval_task']}.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    return dest


def to_lm_eval_names(tasks: list[str], facts: dict[str, dict]) -> list[str]:
    return [facts[t]["lm_eval_task"] if t in facts else t for t in tasks]


def from_lm_eval_name(name: str) -> str:
    """The task a generated local-data task stands for (other names unchanged)."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
