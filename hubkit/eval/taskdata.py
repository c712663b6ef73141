"""Local data for lm-eval tasks (and groups) whose data lives on the Hub.

An eval setup may say `data: {arc_challenge: {files: {test: arc/test.jsonl}}}`. hubkit then
writes a small task YAML that `include`s lm-eval's own config of that task, from the lm-eval
version installed in the eval environment, and replaces only where the documents come from.
Prompt, targets, metrics, filters and few-shot handling stay the task's own.

The generated task gets its own name (`<task>_hubkit_local`): lm-eval before 0.4.10 indexes its
built-in tasks first and lets them win over a same-named task on the include path, so reusing the
name would silently evaluate the Hub data (or fail offline). Results are mapped back to the
original task name and marked as local data in the record and on the card.

Groups (`mmlu`) get a local copy of the group over the subtasks that have data, keeping the
group's own aggregation: either per-subtask entries (`data: {mmlu_anatomy: ...}`), or one file
for the group whose `subtask_column` says which subtask each row belongs to. A group with data
for only some of its subtasks is recorded as such (`coverage`), and cards say so.

The few-shot examples must come from the split the task draws them from (MMLU: `dev`), never
from the test documents: a setup that would do that is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import EvalError
from ..inspection import sha256_file
from ..manifest import DataOverride, EvalSetup, Manifest

SUFFIX = "_hubkit_local"
INDEX_FORMAT = 2
_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
_INCLUDE = re.compile(r"^['\"]?include['\"]?:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)
# `task: x`, `"task": "x"`, `group: x`, `tag: x` on one line (lm-eval's generated YAMLs quote keys)
_NAME_LINE = re.compile(r"^['\"]?(task|group|tag)['\"]?:[ \t]*['\"]?([\w.\-]+)['\"]?[ \t]*(?:#.*)?$", re.MULTILINE)
_LIST_START = re.compile(r"^['\"]?tag['\"]?:[ \t]*$", re.MULTILINE)


def local_name(task: str) -> str:
    return task + SUFFIX


def from_lm_eval_name(name: str) -> str:
    """The task a generated local-data task stands for (other names unchanged)."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name


def to_lm_eval_names(tasks: list[str], facts: dict[str, dict]) -> list[str]:
    return [facts[t]["lm_eval_task"] if t in facts else t for t in tasks]


# -- reading task YAMLs ----------------------------------------------------------------------------


class _TolerantLoader(yaml.SafeLoader):
    """lm-eval's task YAMLs use `!function` tags; reading the data fields needs none of them."""


_TolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _read_yaml(path: Path) -> dict:
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader) or {}  # noqa: S506 (safe loader subclass)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def load_task_config(path: str | Path) -> dict:
    """A task YAML merged with the files it `include`s (the includer's keys win), as lm-eval
    reads it; {} when unreadable. `!function` values come back as None."""
    path = Path(path)
    cfg = _read_yaml(path)
    inc = cfg.pop("include", None)
    if not inc:
        return cfg
    merged: dict = {}
    for i in inc if isinstance(inc, list) else [inc]:
        merged.update(load_task_config(Path(i) if Path(i).is_absolute() else path.parent / i))
    merged.update(cfg)
    return merged


def _includes(path: Path, text: str) -> list[str]:
    return [str(Path(i) if Path(i).is_absolute() else (path.parent / i).resolve()) for i in _INCLUDE.findall(text)]


@dataclass
class TaskIndex:
    """Where an lm-eval install defines each task, group and tag (read from its files, so it
    works for the lm-eval of any eval environment, not only the one hubkit runs in)."""

    tasks: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    file_tags: dict[str, list[str]] = field(default_factory=dict)  # YAML path -> tags it declares
    file_includes: dict[str, list[str]] = field(default_factory=dict)

    def tags_of(self, task: str) -> set[str]:
        """Tags a task has, including those of the templates it includes."""
        out: set[str] = set()
        todo, seen = [self.tasks.get(task)], set()
        while todo:
            p = todo.pop()
            if not p or p in seen:
                continue
            seen.add(p)
            out.update(self.file_tags.get(p, []))
            todo += self.file_includes.get(p, [])
        return out

    def tag_members(self, tag: str) -> list[str]:
        return sorted(t for t in self.tasks if tag in self.tags_of(t))

    def leaves(self, group: str, _seen: frozenset = frozenset()) -> dict[str, list[str]]:
        """{group or subgroup: its children} for every group under `group` (tags expanded);
        children are task, group names. Raises EvalError for inline task definitions."""
        if group in _seen:
            return {}
        cfg = load_task_config(self.groups[group])
        entries = cfg.get("task") or []
        children: list[str] = []
        tree: dict[str, list[str]] = {}
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, str):
                raise EvalError(f"the group {group!r} defines a task inline ({self.groups[group]}); hubkit can point only named tasks at local data")
            if entry in self.groups:
                children.append(entry)
                tree.update(self.leaves(entry, _seen | {group}))
            elif entry in self.tasks:
                children.append(entry)
            else:
                children += self.tag_members(entry)
        tree[group] = children
        return tree


def _index_path(lm_eval_dir: Path) -> Path | None:
    from .envs import hubkit_home

    tasks_dir = lm_eval_dir / "tasks"
    try:
        stamp = tasks_dir.stat().st_mtime_ns
    except OSError:
        return None
    key = hashlib.sha256(f"{INDEX_FORMAT}|{tasks_dir.resolve()}|{stamp}".encode()).hexdigest()[:16]
    return hubkit_home() / "lm-eval-tasks" / f"{key}.json"


_MEMO: dict[str, TaskIndex] = {}  # this process's indexes, by install (a scan costs seconds)


def task_index(lm_eval_dir: str | Path, rebuild: bool = False) -> TaskIndex:
    """The TaskIndex of an lm-eval install, cached under $HUBKIT_HOME (an install does not
    change; a full scan reads ~14k files)."""
    lm_eval_dir = Path(lm_eval_dir).resolve()
    cache = _index_path(lm_eval_dir)
    if cache is not None and not rebuild:
        if cache.name in _MEMO:
            return _MEMO[cache.name]
        try:
            _MEMO[cache.name] = TaskIndex(**json.loads(cache.read_text()))
            return _MEMO[cache.name]
        except (OSError, ValueError, TypeError):
            pass
    index = TaskIndex()
    for path in sorted((lm_eval_dir / "tasks").rglob("*")):
        if not path.is_file() or not (path.suffix == ".yaml" or path.name.endswith("_yaml")):
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        key = str(path)
        incs = _includes(path, text)
        if incs:
            index.file_includes[key] = incs
        tags = []
        for kind, name in _NAME_LINE.findall(text):
            if kind == "task":
                index.tasks.setdefault(name, key)
            elif kind == "group":
                index.groups.setdefault(name, key)
            else:
                tags.append(name)
        if _LIST_START.search(text):
            listed = _read_yaml(path).get("tag")
            tags += [t for t in (listed if isinstance(listed, list) else [listed]) if isinstance(t, str)]
        if tags:
            index.file_tags[key] = sorted(set(tags))
    if cache is not None:
        _MEMO[cache.name] = index
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(index.__dict__))
            tmp.replace(cache)
        except OSError:
            pass
    return index


def _require_lm_eval(lm_eval_dir, task: str) -> Path:
    if not lm_eval_dir:
        raise EvalError(
            f"cannot point {task!r} at local data: lm-eval is not installed in the eval environment",
            hint="Pin lm-eval in the setup (pins: {lm-eval: '==0.4.13'}) or install it.",
        )
    return Path(lm_eval_dir)


def find_task_yaml(lm_eval_dir: str | Path | None, task: str) -> Path:
    """The YAML in lm-eval's task tree that defines task (or group) `task`."""
    root = _require_lm_eval(lm_eval_dir, task)
    for fresh in (False, True):  # a stale cached index is rebuilt once
        index = task_index(root, rebuild=fresh)
        found = index.tasks.get(task) or index.groups.get(task)
        if found and Path(found).is_file():
            return Path(found)
    raise EvalError(
        f"evals.*.data.{task}: lm-eval at {lm_eval_dir} has no task or group named {task!r}",
        hint="Check the name with `lm-eval ls tasks` (or `python -m lm_eval --tasks list` before 0.4.10).",
    )


# -- planning the local copies -----------------------------------------------------------------------


def _file_facts(manifest: Manifest, where: str, rel: str) -> dict:
    path = manifest.resolve(rel)
    if not path.is_file():
        raise EvalError(f"{where}: {path} does not exist", hint="Paths are relative to the manifest.")
    return {"path": str(path), "sha256": sha256_file(path)}


def _eval_split(cfg: dict) -> str | None:
    return cfg.get("test_split") or cfg.get("validation_split")


def _fewshot_split(cfg: dict) -> str | None:
    """The split the task draws few-shot examples from, as lm-eval decides with its real data."""
    if cfg.get("fewshot_split"):
        return cfg["fewshot_split"]
    if cfg.get("training_split"):
        return cfg["training_split"]
    if cfg.get("validation_split") and cfg.get("validation_split") != _eval_split(cfg):
        return cfg["validation_split"]
    return None


def _check_splits(where: str, task: str, cfg: dict, splits: set[str], shots: int) -> None:
    """Refuse files the task would not read, a missing evaluation split, and few-shot examples
    that would be drawn from the test documents."""
    known = {cfg[k]: k for k in _SPLIT_KEYS if cfg.get(k)}
    described = ", ".join(f"{name} ({key.removesuffix('_split').replace('training', 'train').replace('test', 'evaluated')})" for name, key in known.items())
    for split in sorted(splits):
        if split not in known:
            raise EvalError(f"{where}.files.{split}: {task} reads no split named {split!r}; its splits are {described or '(none declared)'}")
    target = _eval_split(cfg)
    if target and target not in splits:
        raise EvalError(f"{where}.files: {task} is evaluated on its {target!r} split; add files.{target}")
    if shots > 0:
        source = _fewshot_split(cfg)
        if source is None:
            raise EvalError(
                f"{where}: {task} is run {shots}-shot but has no split to draw the examples from",
                hint="lm-eval would take them from the test documents themselves (a document can see its own answer). Run 0-shot, or use a task with a train/dev split.",
            )
        if source not in splits:
            raise EvalError(
                f"{where}.files: {task} is run {shots}-shot and draws its examples from its {source!r} split; add files.{source}",
                hint="Without it lm-eval would take the examples from the test documents themselves (a document can see its own answer).",
            )


def _shots(setup: EvalSetup, cfg: dict) -> int:
    if setup.num_fewshot is not None:
        return setup.num_fewshot
    try:
        return int(cfg.get("num_fewshot") or 0)
    except (TypeError, ValueError):
        return 0


def _chain(path: Path) -> list[Path]:
    """The YAML and the files it includes (recursively), which together define the task."""
    chain, todo = [], [path]
    while todo:
        p = todo.pop()
        if p in chain or not p.is_file():
            continue
        chain.append(p)
        todo += [Path(i) for i in _includes(p, p.read_text(encoding="utf-8", errors="replace"))]
    return chain


def _task_plan(manifest: Manifest, where: str, task: str, source: Path, setup: EvalSetup, override: DataOverride | None, derived: dict | None = None) -> dict:
    cfg = load_task_config(source)
    if derived is not None:
        files = derived
    else:
        files = {split: _file_facts(manifest, f"{where}.files.{split}", rel) for split, rel in override.files.items()}
    _check_splits(where, task, cfg, set(files), _shots(setup, cfg))
    return {
        "kind": "task",
        "lm_eval_task": local_name(task),
        "source_config": str(source),
        "source_sha256": {str(p): sha256_file(p) for p in _chain(source)},
        "format": "json" if derived is not None else override.format,
        "splits": {k: cfg.get(k) for k in _SPLIT_KEYS if cfg.get(k)},
        "files": files,
    }


def override_facts(manifest: Manifest, setup: EvalSetup, lm_eval_dir: str | None, *, setup_name: str = "*") -> dict[str, dict]:
    """Per setup task with local data: the source config (path, sha256 of it and its includes),
    each local file with its sha256, and for a group its subtasks and coverage. Raises EvalError
    naming the field for a missing file, an unknown split, a split the task needs, few-shot
    examples that would come from the test split, or data for a task the setup does not run."""
    if not setup.data:
        return {}
    first = next(iter(setup.data))
    root = _require_lm_eval(lm_eval_dir, first)
    index = task_index(root)
    if any(name not in index.tasks and name not in index.groups for name in [*setup.data, *setup.tasks]):
        index = task_index(root, rebuild=True)
    facts: dict[str, dict] = {}
    used: set[str] = set()
    for task in setup.tasks:
        where = f"evals.{setup_name}.data.{task}"
        if task in index.groups and (task in setup.data or any(t in setup.data for t in _all_leaves(index, task))):
            facts[task] = _group_plan(manifest, setup, setup_name, task, index, used)
        elif task in setup.data:
            source = find_task_yaml(root, task)
            facts[task] = _task_plan(manifest, where, task, source, setup, setup.data[task])
            used.add(task)
    for name in setup.data:
        if name not in used:
            raise EvalError(
                f"evals.{setup_name}.data.{name}: not one of this setup's tasks ({', '.join(setup.tasks)}) nor a subtask of its groups",
                hint="Give data for the tasks the setup runs (a group's subtasks by their own names).",
            )
    return facts


def _all_leaves(index: TaskIndex, group: str) -> list[str]:
    tree = index.leaves(group)
    out, todo = [], list(tree.get(group, []))
    while todo:
        child = todo.pop(0)
        if child in tree:
            todo = tree[child] + todo
        else:
            out.append(child)
    return out


def _read_rows(path: Path, fmt: str) -> list[dict]:
    if fmt == "json":
        text = path.read_text(encoding="utf-8")
        stripped = text.lstrip()
        if stripped.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    import pandas as pd

    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    return json.loads(frame.to_json(orient="records"))


def _group_plan(manifest: Manifest, setup: EvalSetup, setup_name: str, group: str, index: TaskIndex, used: set[str]) -> dict:
    where = f"evals.{setup_name}.data.{group}"
    tree = index.leaves(group)
    leaves = _all_leaves(index, group)
    group_data = setup.data.get(group)
    if group_data is not None:
        used.add(group)
        if not group_data.subtask_column:
            raise EvalError(
                f"{where}: {group} is a group of {len(leaves)} tasks; say which column of the files names each row's subtask (subtask_column: subject), or give files per subtask (data: {{{leaves[0]}: ...}})",
            )
    derived_rows: dict[str, dict[str, list[dict]]] = {}
    group_files = {}
    if group_data is not None:
        for split, rel in group_data.files.items():
            group_files[split] = _file_facts(manifest, f"{where}.files.{split}", rel)
            rows = _read_rows(Path(group_files[split]["path"]), group_data.format)
            missing = [i for i, r in enumerate(rows) if group_data.subtask_column not in r]
            if missing:
                raise EvalError(f"{where}.files.{split}: row {missing[0] + 1} of {group_files[split]['path']} has no column {group_data.subtask_column!r}")
            for r in rows:
                derived_rows.setdefault(str(r[group_data.subtask_column]), {}).setdefault(split, []).append(r)
    plans: dict[str, dict] = {}
    for leaf in leaves:
        source = Path(index.tasks[leaf])
        if leaf in setup.data:
            used.add(leaf)
            plans[leaf] = _task_plan(manifest, f"evals.{setup_name}.data.{leaf}", leaf, source, setup, setup.data[leaf])
            continue
        if group_data is None:
            continue
        cfg = load_task_config(source)
        rows = derived_rows.get(str(cfg.get("dataset_name"))) or derived_rows.get(leaf)
        if not rows:
            continue
        derived = {
            split: {"from": group_files[split]["path"], "sha256": group_files[split]["sha256"], "column": group_data.subtask_column, "value": str(cfg.get("dataset_name") if str(cfg.get("dataset_name")) in derived_rows else leaf), "rows": len(r)}
            for split, r in rows.items()
        }
        plans[leaf] = _task_plan(manifest, f"{where} ({leaf})", leaf, source, setup, None, derived=derived)
    if not plans:
        raise EvalError(f"{where}: none of the {len(leaves)} subtasks of {group} has data", hint=f"Its subtasks are named like {', '.join(leaves[:3])}.")
    groups = {}
    for name, children in tree.items():
        kept = [c for c in children if c in plans or c in tree and _has(tree, c, plans)]
        if kept:
            cfg = load_task_config(Path(index.groups[name]))
            groups[name] = {
                "source_config": index.groups[name],
                "children": kept,
                "config": {k: cfg[k] for k in ("group_alias", "aggregate_metric_list", "metadata") if k in cfg},
            }
    return {
        "kind": "group",
        "lm_eval_task": local_name(group),
        "source_config": index.groups[group],
        "source_sha256": {g["source_config"]: sha256_file(Path(g["source_config"])) for g in groups.values()},
        "format": "json",
        "files": group_files,
        "subtask_column": group_data.subtask_column if group_data else None,
        "groups": groups,
        "subtasks": plans,
        "coverage": {"included": sorted(plans), "total": len(leaves), "missing": sorted(set(leaves) - set(plans))},
    }


def _has(tree: dict, group: str, plans: dict) -> bool:
    return any(c in plans or (c in tree and _has(tree, c, plans)) for c in tree.get(group, []))


# -- writing the task folder ---------------------------------------------------------------------------


def _task_yaml(task: str, f: dict, data_files: dict[str, str]) -> str:
    config = {
        "include": f["source_config"],
        "task": f["lm_eval_task"],
        "task_alias": f"{task} (local data)",
        "tag": [],
        "dataset_path": f["format"],
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files},
    }
    for key in _SPLIT_KEYS:
        split = (f.get("splits") or {}).get(key)
        config[key] = split if split in data_files else None
    header = f"# Written by hubkit: lm-eval's {task} with its documents read from local files.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def write_include_dir(dest: Path, facts: dict[str, dict], user_include: Path | None) -> Path:
    """Write the generated task (and group) YAMLs, the per-subtask files cut from a group's
    files, and a copy of the setup's own include_path into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    if user_include and user_include.is_dir():
        shutil.copytree(user_include, dest / "user", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for task, f in facts.items():
        if f["kind"] == "task":
            files = {split: v["path"] for split, v in f["files"].items()}
            (dest / f"{f['lm_eval_task']}.yaml").write_text(_task_yaml(task, f, files))
            continue
        rows_by_split: dict[str, list[dict]] = {}
        for split, info in f["files"].items():
            rows_by_split[split] = _read_rows(Path(info["path"]), "json" if info["path"].endswith((".json", ".jsonl")) else ("csv" if info["path"].endswith(".csv") else "parquet"))
        for leaf, lf in f["subtasks"].items():
            files = {}
            for split, v in lf["files"].items():
                if "from" in v:
                    out = dest / "data" / leaf / f"{split}.jsonl"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    rows = [r for r in rows_by_split[split] if str(r.get(v["column"])) == v["value"]]
                    out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
                    files[split] = str(out)
                else:
                    files[split] = v["path"]
            (dest / f"{lf['lm_eval_task']}.yaml").write_text(_task_yaml(leaf, lf, files))
        for name, g in f["groups"].items():
            config = {
                "group": local_name(name),
                **({"group_alias": g["config"]["group_alias"]} if "group_alias" in g["config"] else {"group_alias": name}),
                "task": [local_name(c) for c in g["children"]],
                **{k: v for k, v in g["config"].items() if k != "group_alias"},
            }
            header = f"# Written by hubkit: lm-eval's group {name} over the subtasks that have local data.\n"
            (dest / f"{local_name(name)}.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    return dest


# -- Hub datasets that cannot be reached -------------------------------------------------------------

# dataset_path values that read local files through a `datasets` builder, never the Hub
_LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "imagefolder", "audiofolder"}


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _cached(dataset_id: str) -> bool:
    """Whether a Hub dataset has a copy in the local caches (hub cache or datasets cache)."""
    from huggingface_hub import constants

    folder = "datasets--" + dataset_id.replace("/", "--")
    if (Path(constants.HF_HUB_CACHE) / folder).is_dir():
        return True
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets")
    flat = dataset_id.replace("/", "___")
    return datasets_cache.is_dir() and any(p.name.startswith(flat) for p in datasets_cache.iterdir())


def unreachable_datasets(tasks: list[str], lm_eval_dir: str | Path | None, overridden: set[str]) -> dict[str, str]:
    """Built-in tasks whose Hub dataset cannot be read here: task -> dataset id.

    Only decided when it can be known without trying: offline (HF_HUB_OFFLINE or
    HF_DATASETS_OFFLINE set) and no cached copy. Tasks with local data, local builders and tasks
    this lm-eval does not define are left to lm-eval itself; a group is checked subtask by subtask."""
    if not _offline() or not lm_eval_dir:
        return {}
    out = {}
    index = task_index(Path(lm_eval_dir))
    for task in tasks:
        if task in overridden:
            continue
        names = _all_leaves(index, task) if task in index.groups else [task]
        for name in names:
            if name not in index.tasks:
                continue
            path = load_task_config(index.tasks[name]).get("dataset_path")
            if not isinstance(path, str) or path in _LOCAL_BUILDERS or Path(path).expanduser().exists():
                continue
            if not _cached(path):
                out[task] = path
                break
    return out


DATASET_HINT = (
    "Point the task at local copies of its data with `data:` in the eval setup, e.g.\n"
    "  data:\n    {task}: {{format: json, files: {{test: data/test.jsonl, train: data/train.jsonl}}}}\n"
    "(rows in the task's own schema; see the README's \"Local data for Hub tasks\"), or run where the Hub is reachable."
)
