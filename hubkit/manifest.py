"""The manifest (`hubkit.yaml`): the one source of truth a card, an eval and a publish derive from.

Every model forbids unknown keys, so a typo is an error that names the file and the field path
instead of a setting silently ignored. Facts that can be read from files (LoRA rank, target
modules, parameter counts) are not typed here: `hubkit.inspection` reads them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ManifestError

DEFAULT_MANIFEST = "hubkit.yaml"

ArtifactKind = Literal["adapter", "merged", "quantized", "full"]
Relation = Literal["adapter", "merge", "quantized", "finetune"]
Strategy = Literal["4bit-lora", "merged-fp16", "bf16-lora", "fp32-lora", "vllm-lora"]
Scalar = Union[bool, int, float, str]

# The Hub's base_model_relation that each artifact kind implies, unless the manifest says otherwise.
DEFAULT_RELATION: dict[str, str] = {
    "adapter": "adapter",
    "merged": "merge",
    "quantized": "quantized",
    "full": "finetune",
}

def repo_id_problem(value: str) -> str | None:
    """Why `value` is not a Hub repo id ('owner/name' or 'name'), or None when it is one.

    The rule is huggingface_hub's own (`validate_repo_id`: letters, digits, '-', '_', '.', no
    '--' or '..', at most 96 characters per part, not ending in '.git'), so an id that passes
    here is never refused later by the client. Manifest, init and publish all ask this function.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError as exc:
        # Its messages end with the id itself (which may hold a newline): keep just the rule.
        reason = str(exc).replace(f": '{value}'", "").replace(" Use `repo_type` argument if needed.", "").strip().rstrip(".")
        return f"expected a Hub repo id like 'owner/name', got {value!r} ({reason[:1].lower() + reason[1:]})"
    return None


def _check_repo_id(cls, v: str | None) -> str | None:
    if v is not None:
        problem = repo_id_problem(v)
        if problem:
            raise ValueError(problem)
    return v


# Front-matter keys hubkit writes from manifest fields: `project.metadata` may not set them.
RESERVED_METADATA = frozenset(
    {"license", "license_name", "license_link", "language", "tags", "library_name", "pipeline_tag", "base_model", "base_model_relation", "datasets", "metrics", "model-index", "model_name", "eval_results"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Citation(_Strict):
    key: str = Field(description="Citation key, e.g. 'dettmers2023qlora'.")
    bibtex: str = Field(description="The full BibTeX entry.")


class Project(_Strict):
    name: str = Field(description="Human-readable name of the model or project, used as card title.")
    summary: str | None = Field(None, description="One or two sentences that open every card.")
    description: str | None = Field(None, description="Longer markdown prose for the card body.")
    description_file: str | None = Field(
        None, description="Path (relative to the manifest) of a markdown file with the description."
    )
    license: str = Field(
        description="A license id from the Hub's list (e.g. 'apache-2.0'), or 'other' with license_name and license_link."
    )
    license_name: str | None = Field(None, description="Short name of a custom license (license: other).")
    license_link: str | None = Field(None, description="Link to a custom license (license: other).")
    license_note: str | None = Field(None, description="Free text on licensing (inheritance, data licenses).")
    language: list[str] = Field(default_factory=list, description="ISO 639-1 codes, e.g. ['en'].")
    tags: list[str] = Field(default_factory=list, description="Extra Hub tags.")
    pipeline_tag: str = Field("text-generation", description="The Hub's pipeline tag.")
    authors: list[str] = Field(default_factory=list, description="Authors shown on the card.")
    links: dict[str, str] = Field(default_factory=dict, description="Named links (paper, code, blog).")
    limitations: list[str] = Field(default_factory=list, description="Known limitations, one per item.")
    citations: list[Citation] = Field(default_factory=list, description="BibTeX entries to cite.")
    context: str | None = Field(None, description="Why the model exists (a test, a paper, a challenge).")
    metrics: list[str] = Field(default_factory=list, description="The Hub's `metrics` metadata (evaluate metric ids, e.g. accuracy).")
    hubkit_tag: bool = Field(True, description="Add the `hubkit` tag to every card's metadata.")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="More Hub metadata for every card's front matter (e.g. new_version, inference, widget), checked by huggingface_hub's ModelCardData; keys hubkit sets itself are refused.",
    )

    @model_validator(mode="after")
    def _other_license_needs_name(self) -> "Project":
        if self.license == "other" and not (self.license_name and self.license_link):
            raise ValueError("license 'other' needs license_name and license_link")
        return self

    @field_validator("metadata")
    @classmethod
    def _extra_metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(v) & RESERVED_METADATA)
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by hubkit from the manifest (use the fields that say so, e.g. project.license, artifacts.NAME.base_model)")
        return v


CARD_SECTIONS = ("about", "results", "specs", "files", "usage", "reproduce", "lineage", "training", "data", "sections", "upstream", "limitations", "license", "citations")


class CardLayout(_Strict):
    """Which generated sections a card has, in which order, and the author's own usage text."""

    sections: list[str] | None = Field(
        None,
        description="Sections in order, from: " + ", ".join(CARD_SECTIONS) + " ('sections' is the manifest's own sections; 'section:TITLE' places one of them). Omitted ones are left out. Default: each kind's order.",
    )
    usage: str | None = Field(None, description="Markdown that replaces the generated usage section (chat template, serving caveats, tested versions).")
    usage_file: str | None = Field(None, description="A markdown file (relative to the manifest) that replaces the generated usage section.")
    upstream_file: str | None = Field(None, description="The upstream model's card (a markdown file) kept as a section, e.g. for a quantization of someone else's model.")
    results_layout: Literal["by_task", "by_model"] = Field(
        "by_task", description="by_task: a table per task and few-shot (rows: models). by_model: one table, a row per model and a column per task (with its few-shot)."
    )
    table_notes: dict[str, str] = Field(default_factory=dict, description="A note under a results table: task name (or the table's title) -> markdown.")

    @field_validator("sections")
    @classmethod
    def _known_sections(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if name not in CARD_SECTIONS and not name.startswith("section:"):
                raise ValueError(f"unknown card section {name!r}; expected one of {', '.join(CARD_SECTIONS)} or section:TITLE")
        return v

    @model_validator(mode="after")
    def _one_usage(self) -> "CardLayout":
        if self.usage is not None and self.usage_file is not None:
            raise ValueError("give at most one of usage or usage_file")
        return self


class Artifact(_Strict):
    kind: ArtifactKind = Field(description="adapter (LoRA), merged (LoRA folded into the base), quantized, or full.")
    path: str = Field(description="Local directory holding the artifact's files, relative to the manifest.")
    repo_id: str | None = Field(None, description="Target Hub repo, 'owner/name'.")
    title: str | None = Field(None, description="Card title; defaults to project.name.")
    summary: str | None = Field(None, description="One-line summary for this artifact's card.")
    base_model: str | list[str] | None = Field(
        None,
        description="Hub id of the immediate parent model (no revision); a list of ids for a merge of several models. For adapters, defaults to the adapter config's base.",
    )
    base_model_revision: str | None = Field(None, description="Revision (commit) of the base model.")
    base_model_path: str | None = Field(
        None, description="Local directory with the base weights, used by eval/merge when the Hub is out of reach."
    )
    relation: Relation | None = Field(None, description="The Hub's base_model_relation; derived from kind if unset.")
    merged: str | None = Field(None, description="Name of the artifact that is this adapter merged (its sibling).")
    adapter: str | None = Field(None, description="For a merged artifact: the name of the adapter it was made from.")
    tokenizer: str | None = Field(None, description="Tokenizer id or path, when it is not the base model's.")
    stage: str | None = Field(None, description="Name of the lineage stage that produced this artifact.")
    datasets: list[str] = Field(default_factory=list, description="Names (keys of `datasets`) used to train it.")
    training: dict[str, Scalar] = Field(
        default_factory=dict, description="Training settings not readable from the files (optimizer, schedule, seed)."
    )
    training_metrics: dict[str, Scalar] = Field(
        default_factory=dict, description="Reported training numbers (steps, final loss, peak VRAM)."
    )
    facts: str | None = Field(
        None,
        description="JSON from `hubkit inspect --json` (plus optional base_params), read when the files are not at `path`, e.g. for a card without the weights at hand.",
    )
    library_name: str | None = Field(None, description="The Hub's library_name; default: peft for adapters, transformers for merged and full models, none for quantized.")
    pipeline_tag: str | None = Field(None, description="The Hub's pipeline tag for this artifact (default: project.pipeline_tag).")
    model_name: str | None = Field(None, description="The name results are filed under in model-index (default: repo_id).")
    card: CardLayout | None = Field(None, description="This card's sections, order and usage text (default: the manifest's `card`).")

    _repo_id_shape = field_validator("repo_id")(_check_repo_id)

    @field_validator("base_model")
    @classmethod
    def _base_ids(cls, v):
        for ref in v if isinstance(v, list) else ([v] if v else []):
            if not isinstance(ref, str) or not ref:
                raise ValueError("expected Hub ids like 'owner/name'")
        return v

    @property
    def base_models(self) -> list[str]:
        return self.base_model if isinstance(self.base_model, list) else ([self.base_model] if self.base_model else [])

    @property
    def hub_relation(self) -> str:
        return self.relation or DEFAULT_RELATION[self.kind]


class Stage(_Strict):
    name: str = Field(description="Stage name, e.g. 'sft', 'dpo', 'nca-hard-margin'.")
    model: str | None = Field(None, description="Hub id or label of the model this stage produced.")
    parent: str | None = Field(None, description="Name of the previous stage (none for the pretrained root).")
    method: str | None = Field(None, description="Training method, e.g. 'SFT', 'DPO (sigmoid)', 'NCA (nca_pair)'.")
    description: str | None = Field(None, description="What happened at this stage, in a sentence.")
    hyperparameters: dict[str, Scalar] = Field(default_factory=dict, description="Key hyperparameters (beta, lr, epochs).")
    data: list[str] = Field(default_factory=list, description="Names (keys of `datasets`) this stage trained on.")
    metrics: dict[str, Scalar] = Field(default_factory=dict, description="Reported numbers of this stage (steps, loss).")
    artifact: str | None = Field(None, description="Name of the artifact this stage produced, if it is in the manifest.")
    teacher: str | None = Field(None, description="A model this stage distilled from (Hub id, label, or a stage name).")
    data_from: str | None = Field(None, description="A model or stage that generated this stage's training data.")


class Dataset(_Strict):
    hub_id: str | None = Field(None, description="Hub dataset id; only Hub ids reach the card's metadata.")
    title: str | None = Field(None, description="Display name; defaults to the key.")
    path: str | None = Field(None, description="Local files (never written into card metadata).")
    rows: int | None = Field(None, description="Rows / pairs used.")
    unit: str = Field("rows", description="What a row is: rows, pairs, triples, sentences.")
    license: str | None = Field(None, description="License of the data, e.g. 'cc-by-sa-4.0'.")
    description: str | None = Field(None, description="Source and filtering, in prose.")
    filters: list[str] = Field(default_factory=list, description="Filtering steps applied, one per item.")


class DataOverride(_Strict):
    """Point an lm-eval task (or group) at local files while keeping its prompt, targets and metrics."""

    format: Literal["json", "parquet", "csv"] = Field("json", description="File format of the local data (JSON lines for json).")
    files: dict[str, str] = Field(
        min_length=1,
        description="Split name -> file path, relative to the manifest. Split names are the task's own (ARC: train, validation, test; MMLU: test, dev, validation). Rows use the task's own schema (e.g. ARC's question/choices/answerKey).",
    )
    subtask_column: str | None = Field(
        None,
        description="For a group (e.g. mmlu) given as one set of files: the column naming each row's subtask (its dataset_name, e.g. MMLU's `subject`, or the task name).",
    )
    hub_id: str | None = Field(
        None, description="The Hub dataset these files are a copy of, if they are (named in the card's model-index); leave unset for other data."
    )
    publish: bool = Field(
        False,
        description="Upload these files with the run records (eval/data/...), so that `hubkit verify` can rerun the setup anywhere. Only for data you may redistribute.",
    )

    @field_validator("files")
    @classmethod
    def _split_names(cls, v: dict[str, str]) -> dict[str, str]:
        for split in v:
            if not re.fullmatch(r"[\w.\-]+", split):
                raise ValueError(f"split name {split!r}: expected a name like test, dev or validation")
        return v


_METRIC = re.compile(r"^[\w.\-]+(,[\w.\- ]+)?$")


class Resources(_Strict):
    """What one unit of an eval (a setup's subjects on a shard of its tasks) asks of its machine."""

    gpus: int | None = Field(None, ge=0, description="GPUs per unit (default: 1 locally when GPUs are visible, else 0). Locally each unit gets its own from the visible ones (CUDA_VISIBLE_DEVICES); more than one runs lm-eval's data parallelism (accelerate launch).")
    cpus: int = Field(1, ge=1, description="CPU cores per unit.")
    mem_gb: float | None = Field(None, gt=0, description="Memory per unit in GiB (Slurm --mem); the scheduler's default when unset.")
    time_min: int = Field(120, ge=1, description="Wall-time limit per unit, in minutes (Slurm --time; a local unit past it is stopped).")


class SlurmSettings(_Strict):
    """Where `--executor slurm` submits (through submitit job arrays)."""

    partition: str | None = Field(None, description="Slurm partition (sbatch --partition).")
    account: str | None = Field(None, description="Slurm account (sbatch --account).")
    qos: str | None = Field(None, description="Slurm QOS (sbatch --qos).")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before each job (module load ..., export ...).")
    sbatch: dict[str, Scalar] = Field(default_factory=dict, description="Other sbatch options, e.g. {constraint: a100}.")
    max_parallel: int | None = Field(None, ge=1, description="At most this many units of one array run at once.")


class HfJobsSettings(_Strict):
    """Where `--executor hf-jobs` runs (Hugging Face Jobs); results come back through a Hub repo."""

    flavor: str = Field("cpu-basic", description="Jobs hardware flavor, e.g. cpu-basic, a10g-small, a100-large, h200.")
    namespace: str | None = Field(None, description="User or organization the jobs run under (default: the token's user).")
    repo: str | None = Field(None, description="Dataset repo that carries each unit's inputs and run records (default: NAMESPACE/hubkit-jobs, created private).")
    image: str | None = Field(None, description="Docker image (default: uv's Python image); the job installs hubkit with uv.")
    requirement: str | None = Field(None, description="What the job installs for hubkit (default: hubkit-ml[eval]==<this version>).")
    timeout: str | None = Field(None, description="Job timeout, e.g. '2h' (default: resources.time_min).")


class Scaleout(_Strict):
    """How `hubkit eval` splits and runs its work: units of (a setup's subjects, a shard of its tasks)."""

    executor: Literal["local", "slurm", "hf-jobs"] = Field("local", description="Where units run: this machine, a Slurm cluster, or Hugging Face Jobs (`--executor` overrides).")
    one_process: bool = Field(True, description="Evaluate a unit's subjects in one process per load path (the base loaded and lm-eval imported once); false runs each subject in its own lm-eval process.")
    subjects_per_unit: int | None = Field(None, ge=1, description="Subjects per unit (default: all of a setup's, or an even share of the visible GPUs locally).")
    task_shards: int = Field(1, ge=1, description="Split a setup's tasks into this many shards, one unit (and one record per subject) each.")
    resources: Resources = Field(default_factory=Resources, description="What each unit asks for.")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings, description="Slurm settings.")
    hf_jobs: HfJobsSettings = Field(default_factory=HfJobsSettings, description="Hugging Face Jobs settings.")


class EvalSetup(_Strict):
    tasks: list[str] = Field(min_length=1, description="lm-eval task names, e.g. ['arc_challenge'].")
    num_fewshot: int | None = Field(None, ge=0, description="Few-shot examples (lm-eval --num_fewshot).")
    metrics: list[str] = Field(
        default_factory=lambda: ["acc", "acc_norm"],
        description="Metrics to report: a name (every filter of it, e.g. exact_match) or name,filter as lm-eval writes it (exact_match,strict-match).",
    )
    batch_size: int | str = Field(1, description="lm-eval --batch_size (an integer or 'auto').")
    limit: int | float | None = Field(None, description="lm-eval --limit: first N docs, or a fraction.")
    strategies: list[Strategy] = Field(
        default_factory=lambda: ["4bit-lora", "merged-fp16"],
        min_length=1,
        description="Load strategies tried in order; the first that succeeds produces the numbers.",
    )
    pins: dict[str, str] = Field(
        default_factory=dict,
        description="Package -> version specifier (e.g. 'lm-eval': '==0.4.5') of the environment the eval runs in.",
    )
    env: Literal["pinned", "current"] = Field(
        "pinned", description="'pinned': an isolated uv environment made from pins; 'current': this interpreter."
    )
    model_args: dict[str, Scalar] = Field(
        default_factory=dict, description="Extra lm-eval model_args (dtype, add_bos_token, trust_remote_code...)."
    )
    gen_kwargs: dict[str, Scalar] = Field(
        default_factory=dict, description="lm-eval --gen_kwargs for generation tasks (max_gen_toks, temperature, do_sample...)."
    )
    include_path: str | None = Field(None, description="Directory of extra lm-eval task YAMLs (relative to the manifest).")
    data: dict[str, DataOverride] = Field(default_factory=dict, description="Task (or group, or a group's subtask) name -> local data.")
    artifacts: list[str] | None = Field(None, description="Artifacts to evaluate; default: every adapter.")
    include_base: bool = Field(True, description="Also evaluate the bare base model as the baseline.")
    command: str | None = Field(None, description="The lm-eval command as a card documents it, kept verbatim.")
    exclude_newer: str | None = Field(
        None, description="Build the pinned environment from releases up to this date (uv --exclude-newer), e.g. '2025-03-01'."
    )
    resources: Resources | None = Field(None, description="What each unit of this setup asks for (default: scaleout.resources).")


    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, v: list[str]) -> list[str]:
        for m in v:
            if not _METRIC.fullmatch(m):
                raise ValueError(f"metric {m!r}: expected a name like acc_norm, or name,filter like exact_match,strict-match")
        return v


class Claim(_Strict):
    """A number reported elsewhere (an earlier card, a paper), shown next to what hubkit reproduced."""

    subject: str = Field(description="An artifact name, or a label for a model not in the manifest.")
    task: str = Field(description="Task name, e.g. 'arc_challenge'.")
    metric: str = Field(description="Metric, e.g. 'acc_norm'.")
    value: float | int | bool | str = Field(description="The reported value.")
    stderr: float | None = Field(None, description="Reported standard error, if any.")
    num_fewshot: int | None = Field(None, description="Few-shot setting of the reported number.")
    setup: str | None = Field(None, description="Name of the eval setup that should reproduce it.")
    source: str | None = Field(None, description="Where the number comes from (card URL, paper).")
    baseline: bool = Field(False, description="This row is the baseline that deltas are computed against.")
    reference_only: bool = Field(False, description="Shown for reference, excluded from deltas and verdicts.")
    domain: str | None = Field(None, description="Optional grouping (e.g. 'math', 'code') for report tables.")
    unit: str | None = Field(None, description="Unit of the value as the source states it, e.g. '%'.")
    display: str | None = Field(None, description="The value exactly as the source words it, e.g. 'possibly contaminated (45.72%)'; `value` keeps the number.")
    note: str | None = Field(None, description="A note on this number, shown as a footnote under its table.")
    model_index: bool | None = Field(
        None,
        description="Put this claim in the card's model-index as a self-reported result (default: when the task is an lm-eval task or a `benchmarks` entry, and the subject is the card's model).",
    )


class Section(_Strict):
    """User prose for the card body: a heading and markdown, inline or from a file."""

    title: str = Field(description="Section heading.")
    body: str | None = Field(None, description="Markdown text.")
    file: str | None = Field(None, description="Markdown file (relative to the manifest) holding the text.")

    @model_validator(mode="after")
    def _one_source(self) -> "Section":
        if (self.body is None) == (self.file is None):
            raise ValueError("give exactly one of body or file")
        return self


class Benchmark(_Strict):
    """A Hub benchmark dataset (registered for the Hub's eval results) a task's numbers belong to."""

    dataset_id: str = Field(description="The benchmark dataset's Hub id, e.g. 'cais/mmlu'.")
    task_id: str = Field(description="The benchmark's task id, e.g. 'default'.")
    metric: str | None = Field(None, description="The metric (name or name,filter) whose value the benchmark reports (default: the first one of the task).")


class SpaceSettings(_Strict):
    """The Gradio Space that compares the adapters side by side (`hubkit space`)."""

    repo_id: str | None = Field(None, description="The Space repo, 'owner/name' (needed for `hubkit space deploy`).")
    title: str | None = Field(None, description="Space title; defaults to project.name.")
    emoji: str = Field("🧪", description="The Space's emoji.")
    adapters: list[str] | None = Field(None, description="Adapter artifacts to show, in column order (default: every adapter).")
    eval: str | None = Field(None, description="Eval setup whose run records fill the Results tab and whose local data gives the multiple-choice examples (default: the first).")
    prompts: list[str] = Field(default_factory=list, description="Example prompts for the Generate tab.")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Upper limit of the new-tokens slider.")
    max_prompt_tokens: int = Field(1024, ge=8, description="Longer prompts are refused with a message.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype in the Space (auto: bfloat16 on a GPU, float32 on a CPU).")
    hardware: str | None = Field(None, description="suggested_hardware for the Space, e.g. 'zero-a10g' or 'cpu-basic'.")
    private: bool = Field(False, description="Create the Space private.")

    _repo_id_shape = field_validator("repo_id")(_check_repo_id)


class Manifest(_Strict):
    schema_version: Literal[1] = Field(1, description="Version of this manifest format.")
    project: Project
    artifacts: dict[str, Artifact] = Field(default_factory=dict, description="Named artifacts to evaluate and publish.")
    lineage: list[Stage] = Field(default_factory=list, description="The chain of training stages, root first.")
    datasets: dict[str, Dataset] = Field(default_factory=dict, description="Named training datasets.")
    evals: dict[str, EvalSetup] = Field(default_factory=dict, description="Named eval setups.")
    claims: list[Claim] = Field(default_factory=list, description="Numbers reported elsewhere.")
    sections: list[Section] = Field(default_factory=list, description="Extra card sections (method, findings).")
    space: SpaceSettings = Field(default_factory=SpaceSettings, description="The side-by-side Gradio Space.")
    scaleout: Scaleout = Field(default_factory=Scaleout, description="How `hubkit eval` runs its units (local, Slurm, HF Jobs).")
    card: CardLayout = Field(default_factory=CardLayout, description="Every card's sections, order and usage text (an artifact's `card` overrides it).")
    benchmarks: dict[str, Benchmark] = Field(
        default_factory=dict,
        description="lm-eval task -> the Hub benchmark dataset it is (for the Hub's `.eval_results/` files, only for benchmarks registered on the Hub).",
    )

    # Set by load_manifest; not part of the schema.
    _source: Path | None = None

    @model_validator(mode="after")
    def _references_resolve(self) -> "Manifest":
        problems = []
        for name, art in self.artifacts.items():
            for field in ("merged", "adapter"):
                ref = getattr(art, field)
                if ref is not None and ref not in self.artifacts:
                    problems.append(f"artifacts.{name}.{field}: no artifact named {ref!r}")
            for ds in art.datasets:
                if ds not in self.datasets:
                    problems.append(f"artifacts.{name}.datasets: no dataset named {ds!r}")
        stage_names = {s.name for s in self.lineage}
        for i, stage in enumerate(self.lineage):
            if stage.parent is not None and stage.parent not in stage_names:
                problems.append(f"lineage.{i}.parent: no stage named {stage.parent!r}")
            if stage.artifact is not None and stage.artifact not in self.artifacts:
                problems.append(f"lineage.{i}.artifact: no artifact named {stage.artifact!r}")
            for ds in stage.data:
                if ds not in self.datasets:
                    problems.append(f"lineage.{i}.data: no dataset named {ds!r}")
        for name, setup in self.evals.items():
            for art in setup.artifacts or []:
                if art not in self.artifacts:
                    problems.append(f"evals.{name}.artifacts: no artifact named {art!r}")
        for name in self.space.adapters or []:
            if name not in self.artifacts:
                problems.append(f"space.adapters: no artifact named {name!r}")
            elif self.artifacts[name].kind != "adapter":
                problems.append(f"space.adapters: {name!r} is a {self.artifacts[name].kind} artifact, not an adapter")
        if self.space.eval is not None and self.space.eval not in self.evals:
            problems.append(f"space.eval: no eval setup named {self.space.eval!r}")
        for i, claim in enumerate(self.claims):
            if claim.setup is not None and claim.setup not in self.evals:
                problems.append(f"claims.{i}.setup: no eval setup named {claim.setup!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- helpers used by every command ------------------------------------------------------

    @property
    def root(self) -> Path:
        """Directory relative paths in the manifest are resolved against."""
        return self._source.parent if self._source else Path.cwd()

    def resolve(self, path: str | None) -> Path | None:
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def artifact(self, name: str) -> Artifact:
        try:
            return self.artifacts[name]
        except KeyError:
            raise ManifestError(
                f"{self._source or DEFAULT_MANIFEST}: artifacts: no artifact named {name!r}",
                hint=f"Known artifacts: {', '.join(self.artifacts) or '(none)'}.",
            ) from None


# -- loading and error text ------------------------------------------------------------------

_TYPE_WORDS = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the last key of `loc`, for 'did you mean' hints."""
    model: Any = Manifest
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if model is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            # a dict key (artifact name, setup name): the value model is the dict's value type
            continue
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in args or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _describe_input(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _format_error(source: str, err: dict) -> str:
    loc = tuple(err["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"  # pydantic's marker for a bad mapping key
    if is_key:
        loc = loc[:-1]
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    if is_key and kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{source}: {path}: unknown key (expected one of {expected})"
    if kind == "extra_forbidden":
        model = _model_at(loc)
        key = str(loc[-1])
        msg = "unknown key"
        if model is not None:
            close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.5)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            else:
                msg += f" (allowed: {', '.join(model.model_fields)})"
        return f"{source}: {path}: {msg}"
    if kind == "missing":
        return f"{source}: {path}: required field is missing"
    if kind in _TYPE_WORDS:
        return f"{source}: {path}: expected {_TYPE_WORDS[kind]}, got {_describe_input(err.get('input'))}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{source}: {path}: expected one of {expected}, got {_describe_input(err.get('input'))}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{source}: {path}: {msg}"


def parse_manifest(data: Any, source: str = DEFAULT_MANIFEST) -> Manifest:
    """Validate already-parsed YAML data. Raises ManifestError listing every problem."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a mapping at the top level, got {_describe_input(data)}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # cross-reference problems arrive as one joined message from the model validator
            if err["type"] == "value_error" and not err["loc"]:
                msg = err["msg"].removeprefix("Value error, ")
                problems.extend(f"{source}: {p}" for p in msg.split("; "))
            else:
                problems.append(_format_error(source, err))
        raise ManifestError(problems[0], problems=problems, path=source) from None


def _duplicate_keys(node: Any, path: str, seen: set[int], out: list[tuple[str, int, int]]) -> None:
    """(key path, line, line of the first one) for each key repeated in a mapping, at any depth.

    YAML itself lets the last repeat win, which silently drops the first one: a second
    `artifacts:` would replace the whole first section. `<<` merge keys are meant to be
    overridden and are not counted."""
    if id(node) in seen:  # an alias: its node was walked where the anchor is
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple, int] = {}
        for key, value in node.value:
            scalar = isinstance(key, yaml.ScalarNode)
            name = key.value if scalar else "?"
            sub = f"{path}.{name}" if path else name
            if scalar and key.tag != "tag:yaml.org,2002:merge":
                ident = (key.tag, key.value)
                if ident in first:
                    out.append((sub, key.start_mark.line + 1, first[ident]))
                else:
                    first[ident] = key.start_mark.line + 1
            _duplicate_keys(value, sub, seen, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}.{i}" if path else str(i), seen, out)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text the way a manifest must be: safe types only, and no key twice in one
    mapping. Raises ManifestError naming `source`, the line and the key path."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters right here
        node = loader.get_single_node()
        if node is None:
            return None
        dups: list[tuple[str, int, int]] = []
        _duplicate_keys(node, "", set(), dups)
        if dups:
            problems = [f"{source}: {key}: duplicate key on line {line} (first on line {first}; YAML would silently keep only the last)" for key, line, first in dups]
            raise ManifestError(problems[0], problems=problems, path=source, hint="Keep one of each: merge the two entries, or rename one.")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is None and isinstance(exc, yaml.reader.ReaderError):
            line = text[: exc.position].count("\n") + 1
            where = f" (line {line})"
        else:
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ManifestError(f"{source}: not valid YAML{where}: {problem}", path=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_manifest(path: str | Path = DEFAULT_MANIFEST) -> Manifest:
    """Read and validate a manifest file.

    Returns the Manifest, whose relative paths resolve against the file's directory.
    Raises ManifestError naming the file and each field path at fault: unreadable or not UTF-8,
    not YAML, a key given twice, or a field the schema refuses. `check_manifest` adds the checks
    that look at the files the manifest names.
    """
    path = Path(path)
    if not path.is_file() and path.is_symlink():
        raise ManifestError(f"{path}: a symlink that leads to no file (broken, or a loop)", hint="Fix the link (`ls -l` shows where it points), or pass -m PATH.", path=path)
    if not path.is_file():
        raise ManifestError(
            f"{path}: no such manifest",
            hint="Run `hubkit init --adapter DIR` to write one, or pass -m PATH.",
            path=path,
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})", path=path, hint="Check the file's permissions.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = raw[:offset].count(b"\n") + 1
        raise ManifestError(
            f"{path}: not UTF-8 text (byte 0x{raw[offset]:02x} on line {line})",
            path=path,
            hint="Save the manifest as UTF-8, e.g. `iconv -f latin1 -t utf-8 hubkit.yaml > fixed.yaml`.",
        ) from None
    data = load_yaml(text, str(path))
    manifest = parse_manifest(data, source=str(path))
    manifest._source = path.resolve()
    return manifest


# -- checks that look at the files a manifest names ---------------------------------------------

# A relative path must stay inside the manifest's folder once `..` and symlinks are resolved: a
# manifest copied from elsewhere, or a symlink planted in the project, must not make `publish`
# send files from the rest of the disk. An absolute path (or ~/...) is explicit: the user wrote
# where it is, so it is allowed anywhere.
Purpose = Literal["validate", "publish", "eval"]


def _path_problem(manifest: Manifest, value: str, where: str) -> str | None:
    """Why a path the manifest names escapes its folder, or None."""
    if Path(value).expanduser().is_absolute():
        return None
    root = manifest.root.resolve()
    target = (manifest.root / value).resolve()
    if target == root or target.is_relative_to(root):
        return None
    lexical = Path(os.path.normpath(root / Path(value).expanduser()))
    how = "through a symlink" if lexical == root or lexical.is_relative_to(root) else "through '..'"
    return f"{where}: {value!r} leads outside the manifest's folder {how} (to {target}); write it as an absolute path if that is where it is"


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", "~", ".")) or "\\" in ref


def _base_problem(manifest: Manifest, name: str, art: Artifact, seen: tuple[str, ...] = ()) -> str | None:
    """Why an artifact meant for the Hub has no base model the Hub knows, or None.

    A Hub base is `base_model` (a repo id), or for an adapter, the base its adapter_config.json
    names when that is a repo id (the documented default); a merged checkpoint may inherit it
    from the adapter it was made from."""
    if art.base_model:
        for ref in art.base_models:
            if _looks_local(ref) or repo_id_problem(ref):
                return f"{ref!r} is not a Hub id"
        return None
    if art.kind == "merged" and art.adapter and art.adapter in manifest.artifacts and art.adapter not in seen:
        inner = _base_problem(manifest, art.adapter, manifest.artifacts[art.adapter], (*seen, name))
        return None if inner is None else f"not set, and its adapter {art.adapter!r} has none either"
    if art.kind != "adapter":
        return "not set"
    folder = manifest.resolve(art.path)
    try:
        cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "not set (and there is no adapter_config.json to take it from)"
    ref = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not ref:
        return "not set, and adapter_config.json names no base"
    if _looks_local(ref) or os.path.isdir(os.path.expanduser(ref)) or repo_id_problem(ref):
        return f"not set, and adapter_config.json names a local folder ({ref})"
    return None


def check_manifest(manifest: Manifest, *, purpose: Purpose = "validate", artifacts: list[str] | None = None) -> list[str]:
    """Checks that need the files, beyond the schema that `load_manifest` applies.

    - Every path the manifest names stays inside its folder unless written absolute (see above).
    - An artifact's `path` exists: for publish and eval an error; for `validate` a warning (the
      artifact may not be built yet, or its card may come from `facts:`).
    - An adapter or merged artifact with a `repo_id` (meant for the Hub) has a base model the Hub
      knows (see `_base_problem`): otherwise its card and the Hub's model tree have no parent.
      Not for `eval`, which can run on a local base.

    `artifacts` limits the artifact checks to those names (publish checks what it publishes).
    Returns the warnings (lines like the errors); raises ManifestError listing every error.
    """
    source = str(manifest._source or DEFAULT_MANIFEST)
    errors: list[str] = []
    warnings: list[str] = []

    def escape(value: str | None, where: str) -> None:
        if value:
            problem = _path_problem(manifest, value, where)
            if problem:
                errors.append(f"{source}: {problem}")

    names = list(manifest.artifacts) if artifacts is None else [n for n in artifacts if n in manifest.artifacts]
    for name in names:
        art = manifest.artifacts[name]
        at = f"artifacts.{name}"
        escape(art.path, f"{at}.path")
        escape(art.base_model_path, f"{at}.base_model_path")
        escape(art.facts, f"{at}.facts")
        folder = manifest.resolve(art.path)
        if not folder.is_dir():
            what = "does not exist" if not folder.exists() else "is not a folder"
            if purpose == "validate":
                # an artifact may not be built yet (a merged sibling before `hubkit merge`)
                how = f"cards use facts: {art.facts}" if art.facts and manifest.resolve(art.facts).is_file() else ("`hubkit merge` builds it" if art.kind == "merged" else "cards show no specs")
                warnings.append(f"{source}: {at}.path: {folder} {what} ({how}; eval and publish need the files)")
            else:
                errors.append(f"{source}: {at}.path: {folder} {what}")
        if art.facts and not manifest.resolve(art.facts).is_file():
            (errors if not folder.is_dir() else warnings).append(f"{source}: {at}.facts: {manifest.resolve(art.facts)} does not exist")
        if art.base_model_path and not manifest.resolve(art.base_model_path).is_dir():
            warnings.append(f"{source}: {at}.base_model_path: {manifest.resolve(art.base_model_path)} does not exist")
        if art.repo_id and art.kind in ("adapter", "merged") and purpose != "eval":  # eval needs no Hub id
            problem = _base_problem(manifest, name, art)
            if problem:
                errors.append(
                    f"{source}: {at}.base_model: {problem}; set it to the base model's Hub id (e.g. mistralai/Mistral-7B-v0.1), "
                    "which the card's loading code and the Hub's model tree use (a local copy goes in base_model_path)"
                )
    if artifacts is None:
        escape(manifest.project.description_file, "project.description_file")
        for i, section in enumerate(manifest.sections):
            escape(section.file, f"sections.{i}.file")
        for name, setup in manifest.evals.items():
            escape(getattr(setup, "include_path", None), f"evals.{name}.include_path")
            for task, override in (getattr(setup, "data", None) or {}).items():
                for split, file in (getattr(override, "files", None) or {}).items():
                    escape(file, f"evals.{name}.data.{task}.files.{split}")
        for name, ds in manifest.datasets.items():
            escape(ds.path, f"datasets.{name}.path")
    for i, claim in enumerate(manifest.claims if artifacts is None else []):
        # a subject may label a model outside the manifest, but one a typo away from an artifact
        # would quietly become another model's row on the card
        close = [] if claim.subject in (*manifest.artifacts, "base") else difflib.get_close_matches(claim.subject, [*manifest.artifacts, "base"], n=1, cutoff=0.8)
        if close:
            warnings.append(f"{source}: claims.{i}.subject: {claim.subject!r} is not an artifact (did you mean {close[0]!r}?); as it is, the claim is another model's row")
    if errors:
        raise ManifestError(errors[0], problems=errors, path=source, hint="Fix the fields above (paths are relative to the manifest's folder).")
    return warnings


def manifest_json_schema() -> dict:
    """The manifest's JSON Schema, for editors (yaml-language-server) and docs."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hubkit manifest (hubkit.yaml)"
    return schema
