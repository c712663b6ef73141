"""The lm-eval command parser on command lines people really wrote (sources named per case).

Each case asserts every parsed field: `_fields` lists everything the parser set, so a field that
appears (or vanishes) unexpectedly fails the test as surely as a wrong value.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hubkit.lmeval_command import (
    CommandError,
    artifact_hints,
    eval_setup_gaps,
    find_lm_eval_commands,
    parse_lm_eval_command,
    to_eval_setup,
)
from hubkit.manifest import EvalSetup

REPO = Path(__file__).resolve().parents[1]
# The seed cards are reference data outside the repo (a clone has no copy; see test_card.py):
# tests that read them run where they are, and the in-repo fixture of seed 000's shape
# (tests/data/cards/seed000-shape-4bit-peft-command.md) covers the same facts everywhere.
SEEDS = next((p for p in (REPO.parent / "shared" / "seeds", Path("/work/shared/seeds")) if p.is_dir()), None)
needs_seeds = pytest.mark.skipif(SEEDS is None, reason="seed cards (../shared/seeds) are not in this checkout")


def _fields(cmd) -> dict:
    """Every field the parser filled, in one comparable mapping."""
    out = {"launcher": cmd.launcher, "dialect": cmd.dialect}
    for name in (
        "launcher_args", "env", "model", "tasks", "num_fewshot", "batch_size", "max_batch_size", "limit", "device",
        "apply_chat_template", "fewshot_as_multiturn", "system_instruction", "gen_kwargs", "seed", "output_path",
        "log_samples", "write_out", "include_path", "trust_remote_code", "use_cache", "cache_requests", "metadata",
        "other_flags", "unknown_flags", "unresolved",
    ):
        value = getattr(cmd, name)
        if value not in (None, [], {}):
            out[name] = value
    args = cmd.model_args.as_dict()
    if args:
        out["model_args"] = args
    return out


CASES = [
    pytest.param(
        # EleutherAI/lm-evaluation-harness README.md (0.4.x), "Advanced usage": PEFT + 4-bit
        "lm_eval --model hf \\\n"
        "    --model_args pretrained=EleutherAI/gpt-j-6b,parallelize=True,load_in_4bit=True,peft=nomic-ai/gpt4all-j-lora \\\n"
        "    --tasks openbookqa,arc_easy,winogrande,hellaswag,arc_challenge,piqa,boolq \\\n"
        "    --device cuda:0\n",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "hf", "device": "cuda:0",
            "model_args": {"pretrained": "EleutherAI/gpt-j-6b", "peft": "nomic-ai/gpt4all-j-lora", "load_in_4bit": True, "parallelize": "True"},
            "tasks": ["openbookqa", "arc_easy", "winogrande", "hellaswag", "arc_challenge", "piqa", "boolq"],
        },
        id="lm-eval-readme-peft-4bit",
    ),
    pytest.param(
        # EleutherAI/lm-evaluation-harness README.md (0.4.0 wording): the same call as `python -m lm_eval`
        "python -m lm_eval \\\n"
        "    --model hf \\\n"
        "    --model_args pretrained=EleutherAI/gpt-j-6b,parallelize=True,load_in_4bit=True,peft=nomic-ai/gpt4all-j-lora \\\n"
        "    --tasks openbookqa,arc_easy,winogrande,hellaswag,arc_challenge,piqa,boolq \\\n"
        "    --device cuda:0\n",
        {},
        {
            "launcher": "python -m lm_eval", "dialect": "0.4", "model": "hf", "device": "cuda:0",
            "model_args": {"pretrained": "EleutherAI/gpt-j-6b", "peft": "nomic-ai/gpt4all-j-lora", "load_in_4bit": True, "parallelize": "True"},
            "tasks": ["openbookqa", "arc_easy", "winogrande", "hellaswag", "arc_challenge", "piqa", "boolq"],
        },
        id="lm-eval-readme-python-m",
    ),
    pytest.param(
        # EleutherAI/lm-evaluation-harness README.md (0.3.x, master before the 0.4 refactor): main.py + PEFT
        "python main.py \\\n"
        "    --model hf-causal-experimental \\\n"
        "    --model_args pretrained=EleutherAI/gpt-j-6b,peft=nomic-ai/gpt4all-j-lora \\\n"
        "    --tasks openbookqa,arc_easy,winogrande,hellaswag,arc_challenge,piqa,boolq \\\n"
        "    --device cuda:0\n",
        {},
        {
            "launcher": "python main.py", "dialect": "0.3", "model": "hf-causal-experimental", "device": "cuda:0",
            "model_args": {"pretrained": "EleutherAI/gpt-j-6b", "peft": "nomic-ai/gpt4all-j-lora"},
            "tasks": ["openbookqa", "arc_easy", "winogrande", "hellaswag", "arc_challenge", "piqa", "boolq"],
        },
        id="lm-eval-0.3-readme-main-py",
    ),
    pytest.param(
        # lm-eval 0.4.13, lm_eval/_cli/run.py, the `run` subcommand's help epilog
        "lm-eval run --model hf --model_args pretrained=gpt2 dtype=float32 --tasks hellaswag",
        {},
        {"launcher": "lm-eval run", "dialect": "0.4.10+", "model": "hf", "model_args": {"pretrained": "gpt2", "dtype": "float32"}, "tasks": ["hellaswag"]},
        id="lm-eval-0.4.13-run-space-separated-model-args",
    ),
    pytest.param(
        # lm-eval 0.4.13, lm_eval/_cli/run.py epilog: tasks as separate words
        "lm-eval run --model vllm --model_args pretrained=EleutherAI/gpt-j-6B --tasks arc_easy arc_challenge --num_fewshot 5",
        {},
        {
            "launcher": "lm-eval run", "dialect": "0.4.10+", "model": "vllm", "model_args": {"pretrained": "EleutherAI/gpt-j-6B"},
            "tasks": ["arc_easy", "arc_challenge"], "num_fewshot": 5,
        },
        id="lm-eval-0.4.13-run-vllm-space-separated-tasks",
    ),
    pytest.param(
        # lm-eval 0.4.13, lm_eval/_cli/run.py epilog: gen_kwargs as several words, one quoted
        "lm-eval run --model hf --model_args pretrained=gpt2 --tasks lambada --gen_kwargs temperature=0.8 top_p=0.95 'stop=[\"\\n\\n\"]'",
        {},
        {
            "launcher": "lm-eval run", "dialect": "0.4.10+", "model": "hf", "model_args": {"pretrained": "gpt2"}, "tasks": ["lambada"],
            "gen_kwargs": {"temperature": "0.8", "top_p": "0.95", "stop": '["\\n\\n"]'},
        },
        id="lm-eval-0.4.13-run-gen-kwargs-words",
    ),
    pytest.param(
        # lm-eval 0.4.13, lm_eval/_cli/harness.py epilog: the legacy spelling, with a shell comment after it
        "lm-eval --model hf --tasks hellaswag  # Equivalent to 'lm-eval run --model hf --tasks hellaswag'",
        {},
        {"launcher": "lm-eval", "dialect": "0.4", "model": "hf", "tasks": ["hellaswag"]},
        id="lm-eval-0.4.13-legacy-with-comment",
    ),
    pytest.param(
        # Matrix-King-Studio/AccelerateModelInference, lm-evaluate.sh
        "lm_eval --model hf \\\n"
        "    --model_args pretrained=Qwen/Qwen-7B,trust_remote_code=True,load_in_8bit=True \\\n"
        "    --tasks arc_challenge,hellaswag,piqa \\\n"
        "    --device cpu \\\n"
        "    --batch_size 16 \\\n"
        "    --output_path ./lm-eval-output\n",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "hf", "device": "cpu", "batch_size": 16, "output_path": "./lm-eval-output",
            "model_args": {"pretrained": "Qwen/Qwen-7B", "trust_remote_code": True, "load_in_8bit": True},
            "tasks": ["arc_challenge", "hellaswag", "piqa"],
        },
        id="accelerate-model-inference-8bit",
    ),
    pytest.param(
        # ryanyxw/phdbrainstorm, eval_token_prefix.sh: accelerate, a continuation with no space before `\`
        "accelerate launch -m lm_eval --model hf \\\n"
        "    --model_args pretrained=meta-llama/Meta-Llama-3-8B \\\n"
        "    --tasks mmlu,mmlu_generative,pubmed_qa,wikitext\\\n"
        "    --batch_size auto:4\n",
        {},
        {
            "launcher": "accelerate launch -m lm_eval", "dialect": "0.4", "model": "hf", "model_args": {"pretrained": "meta-llama/Meta-Llama-3-8B"},
            "tasks": ["mmlu", "mmlu_generative", "pubmed_qa", "wikitext"], "batch_size": "auto:4",
        },
        id="accelerate-auto-4",
    ),
    pytest.param(
        # EleutherAI/lm-evaluation-harness, scripts/eval.sh: an env prefix and a positional shell argument
        "TRITON_PRINT_AUTOTUNING=1 accelerate launch -m lm_eval \\\n"
        "    --model hf \\\n"
        "    --model_args dtype=bfloat16,pretrained=$1 \\\n"
        "    --tasks wikitext,openbookqa,piqa,sciq,arc_easy,arc_challenge,boolq,copa,hellaswag,winogrande,race,lambada_openai \\\n"
        "    --batch_size auto\n",
        {},
        {
            "launcher": "accelerate launch -m lm_eval", "dialect": "0.4", "env": {"TRITON_PRINT_AUTOTUNING": "1"}, "model": "hf",
            "model_args": {"pretrained": "$1", "dtype": "bfloat16"}, "batch_size": "auto", "unresolved": ["$1"],
            "tasks": ["wikitext", "openbookqa", "piqa", "sciq", "arc_easy", "arc_challenge", "boolq", "copa", "hellaswag", "winogrande", "race", "lambada_openai"],
        },
        id="harness-scripts-eval-sh",
    ),
    pytest.param(
        # EleutherAI/lm-evaluation-harness, scripts/eval-retrieval.sh: --metadata as single-quoted JSON
        "TRITON_PRINT_AUTOTUNING=1 accelerate launch -m lm_eval \\\n"
        "    --model hf \\\n"
        "    --model_args dtype=bfloat16,pretrained=$1 \\\n"
        "    --tasks based_drop \\\n"
        "    --limit 100 \\\n"
        "    --metadata '{\"max_seq_lengths\":[2048]}' \\\n"
        "    --batch_size 1\n",
        {},
        {
            "launcher": "accelerate launch -m lm_eval", "dialect": "0.4", "env": {"TRITON_PRINT_AUTOTUNING": "1"}, "model": "hf",
            "model_args": {"pretrained": "$1", "dtype": "bfloat16"}, "tasks": ["based_drop"], "limit": 100, "batch_size": 1,
            "metadata": '{"max_seq_lengths":[2048]}', "unresolved": ["$1"],
        },
        id="harness-scripts-eval-retrieval-metadata",
    ),
    pytest.param(
        # alexstein0/efficient_tokenization_for_inference, scripts/benchmark.sh: launcher options, quoted model_args
        "accelerate launch --num_processes 8 -m lm_eval --model hf \\\n"
        "    --model_args \"pretrained=meta-llama/Llama-3.2-1B,parallelize=True,do_sample=True,temperature=0.7,top_p=3\" \\\n"
        "    --tasks minerva_math \\\n"
        "    --batch_size 4 \\\n"
        "    --trust_remote_code \\\n"
        "    --output_path \"./eval_results.json\" \\\n"
        "    --num_fewshot 4 \\\n"
        "    --limit 100\n",
        {},
        {
            "launcher": "accelerate launch -m lm_eval", "launcher_args": ["--num_processes", "8"], "dialect": "0.4", "model": "hf",
            "model_args": {"pretrained": "meta-llama/Llama-3.2-1B", "parallelize": "True", "do_sample": "True", "temperature": "0.7", "top_p": "3"},
            "tasks": ["minerva_math"], "batch_size": 4, "trust_remote_code": True, "output_path": "./eval_results.json", "num_fewshot": 4, "limit": 100,
        },
        id="accelerate-num-processes-quoted-args",
    ),
    pytest.param(
        # llxcfamily/lm-evaluation-harness, run_hellaswag.sh: 0.3 main.py, quoted values, a commented-out flag after a blank line
        "python main.py \\\n"
        "   --model hf-causal \\\n"
        "   --model_args pretrained=\"../models/llama-7b-hf/\" \\\n"
        "   --tasks \"hellaswag\" \\\n"
        "   --batch_size 16 \\\n"
        "   --output_path ./hellaswag_llama_7b.json \\\n"
        "   --device cuda:0 \\\n"
        "   --limit 10\n"
        "\n"
        "##--num_fewshot 5 \\\n",
        {},
        {
            "launcher": "python main.py", "dialect": "0.3", "model": "hf-causal", "model_args": {"pretrained": "../models/llama-7b-hf/"},
            "tasks": ["hellaswag"], "batch_size": 16, "output_path": "./hellaswag_llama_7b.json", "device": "cuda:0", "limit": 10,
        },
        id="llxc-0.3-quoted-and-commented",
    ),
    pytest.param(
        # pfnet-research/lm-evaluation-harness (a 0.3 fork), models/cyberagent-open-calm-1b/harness.sh:
        # arguments in shell variables set above the command, and one few-shot count per task
        "python main.py     --model hf-causal     --model_args $MODEL_ARGS     --tasks $TASK     --num_fewshot \"2,3,3,3\"     --device \"cuda\"     --output_path \"models/cyberagent-open-calm-1b/result.json\"",
        {"MODEL_ARGS": "pretrained=cyberagent/open-calm-1b", "TASK": "jsquad-1.1-0.2,jcommonsenseqa-1.1-0.2,jnli-1.1-0.2,marc_ja-1.1-0.2"},
        {
            "launcher": "python main.py", "dialect": "0.3", "model": "hf-causal", "model_args": {"pretrained": "cyberagent/open-calm-1b"},
            "tasks": ["jsquad-1.1-0.2", "jcommonsenseqa-1.1-0.2", "jnli-1.1-0.2", "marc_ja-1.1-0.2"], "device": "cuda",
            "output_path": "models/cyberagent-open-calm-1b/result.json",
        },
        id="pfnet-variables-per-task-fewshot",
    ),
    pytest.param(
        # NKWBTB/lm-evaluation-harness, run_eval.sh: vllm, chat template, log_samples
        "lm_eval --model vllm \\\n"
        "    --model_args pretrained=mistralai/Mistral-7B-Instruct-v0.1,dtype=auto,gpu_memory_utilization=0.7 \\\n"
        "    --tasks xlsum \\\n"
        "    --batch_size auto \\\n"
        "    --output_path sum_test/ \\\n"
        "    --apply_chat_template \\\n"
        "    --limit 10 \\\n"
        "    --log_samples",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "vllm",
            "model_args": {"pretrained": "mistralai/Mistral-7B-Instruct-v0.1", "dtype": "auto", "gpu_memory_utilization": "0.7"},
            "tasks": ["xlsum"], "batch_size": "auto", "output_path": "sum_test/", "apply_chat_template": True, "limit": 10, "log_samples": True,
        },
        id="nkwbtb-vllm-chat-template",
    ),
    pytest.param(
        # rastadayon/lm-evaluation-harness, scripts/bash_scripts/ppo_scripts/Llama3.1_8B_SFT_naveen_ppo.sh: a trailing backslash
        "lm_eval \\\n"
        "  --model vllm \\\n"
        "  --model_args pretrained=/data/rasta/models/naveen_settings/policy_only,tensor_parallel_size=1,dtype=auto,gpu_memory_utilization=0.8,data_parallel_size=1 \\\n"
        "  --batch_size auto \\\n"
        "  --tasks nutribench_v2_base \\\n"
        "  --output_path results/Llama3.1_8B_SFT_v2_naveen_ppo \\\n"
        "  --seed 42 \\\n"
        "  --log_samples \\\n"
        "  --apply_chat_template \\\n",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "vllm",
            "model_args": {"pretrained": "/data/rasta/models/naveen_settings/policy_only", "dtype": "auto", "tensor_parallel_size": "1", "gpu_memory_utilization": "0.8", "data_parallel_size": "1"},
            "batch_size": "auto", "tasks": ["nutribench_v2_base"], "output_path": "results/Llama3.1_8B_SFT_v2_naveen_ppo", "seed": [42, 42, 42, 42],
            "log_samples": True, "apply_chat_template": True,
        },
        id="rastadayon-trailing-backslash-seed",
    ),
    pytest.param(
        # parsiyte/LLM-GPU-Energy-Evaluation, model_scripts/vllama_3_1_8b.sh: a quoted value inside k=v,k=v
        "lm_eval   --model vllm   --model_args pretrained=\"/data/lm-evaluation-harness/Llama-3.1-8B-Instruct\",dtype=auto,max_model_len=4096,max_gen_toks=1024,tensor_parallel_size=1 --fewshot_as_multiturn --num_fewshot 3   --tasks bbh   --batch_size auto",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "vllm",
            "model_args": {"pretrained": "/data/lm-evaluation-harness/Llama-3.1-8B-Instruct", "dtype": "auto", "max_model_len": "4096", "max_gen_toks": "1024", "tensor_parallel_size": "1"},
            "fewshot_as_multiturn": True, "num_fewshot": 3, "tasks": ["bbh"], "batch_size": "auto",
        },
        id="parsiyte-quoted-value-in-model-args",
    ),
    pytest.param(
        # allenlee-37/KT-lm-evaluation-harness, sh_scripts/midm2.0-8b-mmlu-pro.sh: every argument in a variable
        "lm_eval --model $model \\\n"
        "    --model_args $model_args \\\n"
        "    --tasks $tasks \\\n"
        "    --output_path output \\\n"
        "    --batch_size auto \\\n"
        "    --log_samples \\\n"
        "    --apply_chat_template \\\n"
        "    --limit 10",
        {"model": "hf", "model_args": "pretrained=/vfroot/n22-largeai/studio/Midm-bitext-S-Chat/midm-bitext-s-chat-200", "tasks": "leaderboard_mmlu_pro"},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "hf", "model_args": {"pretrained": "/vfroot/n22-largeai/studio/Midm-bitext-S-Chat/midm-bitext-s-chat-200"},
            "tasks": ["leaderboard_mmlu_pro"], "output_path": "output", "batch_size": "auto", "log_samples": True, "apply_chat_template": True, "limit": 10,
        },
        id="kt-harness-variables",
    ),
    pytest.param(
        # EleutherAI/lm-evaluation-harness, eval_latam_mmlu.sh: continuation lines without indentation
        "lm_eval --model hf \\\n"
        "--model_args \"pretrained=meta-llama/Llama-3.1-70B-Instruct,parallelize=True\"  \\\n"
        "--tasks latam_mmlu \\\n"
        "--device cuda:0 \\\n"
        "--batch_size 32 \\\n"
        "--num_fewshot 5 \\\n"
        "--output_path outputs \\\n"
        "--log_samples",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "hf", "model_args": {"pretrained": "meta-llama/Llama-3.1-70B-Instruct", "parallelize": "True"},
            "tasks": ["latam_mmlu"], "device": "cuda:0", "batch_size": 32, "num_fewshot": 5, "output_path": "outputs", "log_samples": True,
        },
        id="harness-latam-mmlu",
    ),
    pytest.param(
        # Dornavineeth/SmallLMReasoning, eval-scripts/phi2-mmlu-humanities.sh
        "lm_eval --model hf \\\n"
        "    --model_args pretrained=microsoft/phi-2,parallelize=True \\\n"
        "    --tasks mmlu_flan_cot_fewshot_humanities \\\n"
        "    --batch_size auto:1 \\\n"
        "    --output_path results/phi-2/mmlu/humanities/ \\\n"
        "    --log_samples \\\n"
        "    --seed 0 \\",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "hf", "model_args": {"pretrained": "microsoft/phi-2", "parallelize": "True"},
            "tasks": ["mmlu_flan_cot_fewshot_humanities"], "batch_size": "auto:1", "output_path": "results/phi-2/mmlu/humanities/",
            "log_samples": True, "seed": [0, 0, 0, 0],
        },
        id="small-lm-reasoning-auto-1-seed-0",
    ),
    pytest.param(
        # SNU-ARC/NestedFP, acc_eval/lm_eval/run_qwen3_14b_fp8.sh: output redirected with `&>`
        "lm_eval --model hf \\\n"
        "    --model_args pretrained=/disk/models/Qwen3-14B-FP8,device_map=cuda:0 \\\n"
        "    --tasks gsm8k \\\n"
        "    --device cuda:0 \\\n"
        "    --batch_size 8 \\\n"
        "    &> result_qwen3_14b_fp8.txt\n",
        {},
        {
            "launcher": "lm_eval", "dialect": "0.4", "model": "hf", "model_args": {"pretrained": "/disk/models/Qwen3-14B-FP8", "device_map": "cuda:0"},
            "tasks": ["gsm8k"], "device": "cuda:0", "batch_size": 8,
        },
        id="nestedfp-redirect",
    ),
    pytest.param(
        # A public README in the search index (its repository is not named there; index id 52494566720):
        # lm-eval 0.4.11's `run` subcommand through a virtualenv path
        ".venv/bin/lm_eval run --model hf \\\n"
        "  --model_args pretrained=models/Qwen3-4B,dtype=bfloat16 \\\n"
        "  --tasks gsm8k --num_fewshot 8 \\\n"
        "  --output_path results/hf-qwen3-4b\n",
        {},
        {
            "launcher": ".venv/bin/lm_eval run", "dialect": "0.4.10+", "model": "hf", "model_args": {"pretrained": "models/Qwen3-4B", "dtype": "bfloat16"},
            "tasks": ["gsm8k"], "num_fewshot": 8, "output_path": "results/hf-qwen3-4b",
        },
        id="venv-path-lm-eval-run",
    ),
    pytest.param(
        # A public README in the search index (index id 55351997177): python3, space-separated tasks,
        # --apply_chat_template right before another flag
        "python3 -m lm_eval --model hf \\\n"
        "    --model_args pretrained=Qwen/Qwen3.5-2B,enable_thinking=False --apply_chat_template \\\n"
        "    --tasks ukrainian_dev sorbian_dev \\\n"
        "    --device cuda:0 --batch_size auto \\\n"
        "    --output_path baseline_output --log_samples\n",
        {},
        {
            "launcher": "python3 -m lm_eval", "dialect": "0.4.10+", "model": "hf", "model_args": {"pretrained": "Qwen/Qwen3.5-2B", "enable_thinking": "False"},
            "apply_chat_template": True, "tasks": ["ukrainian_dev", "sorbian_dev"], "device": "cuda:0", "batch_size": "auto",
            "output_path": "baseline_output", "log_samples": True,
        },
        id="python3-space-separated-tasks",
    ),
    pytest.param(
        # A public README in the search index (index id 66078588334): GGUF with a <tokenizer> placeholder
        "lm_eval run --model hf \\\n"
        "  --model_args pretrained=/path/to/model,gguf_file=model.gguf,tokenizer=<tokenizer> \\\n"
        "  --tasks mmlu_pro,ifeval,gsm8k \\\n"
        "  --device mps \\\n"
        "  --batch_size 1\n",
        {},
        {
            "launcher": "lm_eval run", "dialect": "0.4.10+", "model": "hf",
            "model_args": {"pretrained": "/path/to/model", "tokenizer": "<tokenizer>", "gguf_file": "model.gguf"},
            "tasks": ["mmlu_pro", "ifeval", "gsm8k"], "device": "mps", "batch_size": 1, "unresolved": ["<tokenizer>"],
        },
        id="gguf-placeholder",
    ),
    pytest.param(
        # A public script in the search index (index id 68627226379): the interpreter in a variable,
        # shell variables in values, output redirected
        "$PY -m lm_eval run --model hf \\\n"
        "      --model_args \"pretrained=$path,dtype=bfloat16\" \\\n"
        "      --tasks gsm8k --num_fewshot 5 --limit 300 --batch_size 2 --seed 0 \\\n"
        "      --output_path \"$OUT/benchx_$name\" \\\n"
        "      > \"$OUT/benchx_${name}_gsm8k.log\" 2>&1\n",
        {},
        {
            "launcher": "$PY -m lm_eval run", "dialect": "0.4.10+", "model": "hf", "model_args": {"pretrained": "$path", "dtype": "bfloat16"},
            "tasks": ["gsm8k"], "num_fewshot": 5, "limit": 300, "batch_size": 2, "seed": [0, 0, 0, 0], "output_path": "$OUT/benchx_$name",
            "unresolved": ["$path", "$OUT", "$name"],
        },
        id="interpreter-variable-run",
    ),
    pytest.param(
        # A public script in the search index (index id 7427271586): `--trust_remote_code True`,
        # which lm-eval rejects (the flag takes no value)
        "python3 -m lm_eval --model hf \\\n"
        "    --model_args pretrained=$MODELS_PATH/$MODEL_NAME \\\n"
        "    --tasks arc_challenge,hellaswag,truthfulqa,mmlu,winogrande,gsm8k \\\n"
        "    --device cuda \\\n"
        "    --batch_size auto \\\n"
        "    --trust_remote_code True \\\n"
        "    --output_path $RESULTS_PATH/$MODEL_NAME.json\n",
        {},
        {
            "launcher": "python3 -m lm_eval", "dialect": "0.4", "model": "hf", "model_args": {"pretrained": "$MODELS_PATH/$MODEL_NAME"},
            "tasks": ["arc_challenge", "hellaswag", "truthfulqa", "mmlu", "winogrande", "gsm8k"], "device": "cuda", "batch_size": "auto",
            "trust_remote_code": True, "output_path": "$RESULTS_PATH/$MODEL_NAME.json", "unresolved": ["$MODELS_PATH", "$MODEL_NAME", "$RESULTS_PATH"],
        },
        id="trust-remote-code-with-a-value",
    ),
    pytest.param(
        # lm-eval 0.4.13, lm_eval/_cli/utils.py (MergeDictAction's comment): model_args as a JSON object
        "lm-eval run --model hf --model_args '{\"pretrained\":\"/models/openai_gpt-oss-20b\",\"dtype\":\"auto\",\"chat_template_args\":{\"reasoning_effort\":\"low\"},\"enable_thinking\": true,\"think_end_token\":\"<|message|>\"}' --tasks gsm8k",
        {},
        {
            "launcher": "lm-eval run", "dialect": "0.4.10+", "model": "hf", "tasks": ["gsm8k"],
            "model_args": {"pretrained": "/models/openai_gpt-oss-20b", "dtype": "auto", "chat_template_args": '{"reasoning_effort": "low"}', "enable_thinking": "true", "think_end_token": "<|message|>"},
        },
        id="json-model-args",
    ),
    pytest.param(
        # garage-bAInd/Platypus2-70B-instruct model card (tests/data/real/cards/platypus2-70b-instruct.md): 0.3 flags
        "python main.py --model hf-causal-experimental --model_args pretrained=garage-bAInd/Platypus2-70B-instruct --tasks hendrycksTest-* --batch_size 1 --no_cache --write_out --output_path results/Platypus2-70B-instruct/mmlu_5shot.json --device cuda --num_fewshot 5",
        {},
        {
            "launcher": "python main.py", "dialect": "0.3", "model": "hf-causal-experimental", "model_args": {"pretrained": "garage-bAInd/Platypus2-70B-instruct"},
            "tasks": ["hendrycksTest-*"], "batch_size": 1, "write_out": True, "other_flags": {"no_cache": True},
            "output_path": "results/Platypus2-70B-instruct/mmlu_5shot.json", "device": "cuda", "num_fewshot": 5,
        },
        id="platypus-card-0.3",
    ),
]


@pytest.mark.parametrize("text, variables, expected", CASES)
def test_real_command_spellings_parse_completely(text, variables, expected):
    cmd = parse_lm_eval_command(text, variables=variables)
    assert _fields(cmd) == expected
    # `found` names exactly what the text stated; defaults never overlap it
    for name in cmd.found:
        assert name not in cmd.defaults


def test_per_task_fewshot_list_is_reported_not_guessed():
    # pfnet-research's 0.3 fork takes one few-shot count per task; a hubkit setup has one number
    cmd = parse_lm_eval_command('python main.py --model hf-causal --model_args pretrained=x --tasks a,b --num_fewshot "2,3"')
    assert cmd.num_fewshot is None and "num_fewshot" not in cmd.found
    assert any("2,3" in w for w in cmd.warnings)
    assert cmd.defaults["num_fewshot"].value == 0  # lm-eval 0.3's own default, labelled as such


def test_defaults_are_labelled_and_follow_the_dialect():
    new = parse_lm_eval_command("lm_eval --model hf --model_args pretrained=gpt2 --tasks hellaswag")
    assert new.defaults["batch_size"].value == 1
    assert new.defaults["num_fewshot"].value is None and "task" in new.defaults["num_fewshot"].note
    assert new.defaults["model_args.dtype"].value == "auto"
    assert new.defaults["apply_chat_template"].value is False
    assert new.defaults["seed"].value == [0, 1234, 1234, 1234]
    old = parse_lm_eval_command("python main.py --model hf-causal --model_args pretrained=gpt2 --tasks hellaswag")
    assert old.defaults["num_fewshot"].value == 0
    assert "apply_chat_template" not in old.defaults  # 0.3 has no chat templates at all
    lines = new.explain()
    assert "tasks = ['hellaswag'] (found)" in lines
    assert any(line.startswith("batch_size = 1 (default") for line in lines)


def test_chat_template_defaults_multiturn_and_named_template():
    on = parse_lm_eval_command("lm_eval --model hf --model_args pretrained=gpt2 --tasks gsm8k --apply_chat_template")
    assert on.defaults["fewshot_as_multiturn"].value is True
    named = parse_lm_eval_command("lm_eval --model hf --model_args pretrained=gpt2 --tasks gsm8k --apply_chat_template chatml --limit 5")
    assert named.apply_chat_template == "chatml" and named.limit == 5
    off = parse_lm_eval_command("lm_eval --model hf --model_args pretrained=gpt2 --tasks gsm8k --apply_chat_template --fewshot_as_multiturn false")
    assert off.apply_chat_template is True and off.fewshot_as_multiturn is False


@pytest.mark.parametrize(
    "text",
    [
        "HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 lm_eval --model hf --model_args pretrained=meta-llama/Llama-3.1-8B --tasks mmlu",
        "HF_TOKEN='s3cr3t-value-12345' python -m lm_eval --model hf --model_args pretrained=meta-llama/Llama-3.1-8B --tasks mmlu",
        "lm_eval --model hf --model_args pretrained=meta-llama/Llama-3.1-8B,token=s3cr3t-value-12345 --tasks mmlu",
        "lm_eval --model hf --model_args pretrained=meta-llama/Llama-3.1-8B --tasks mmlu --hf_hub_log_args hub_results_org=x,token=s3cr3t-value-12345",
    ],
)
def test_token_values_never_survive(text):
    cmd = parse_lm_eval_command(text)
    dumped = cmd.model_dump_json()
    for secret in ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "s3cr3t-value-12345"):
        assert secret not in dumped
        assert secret not in str(to_eval_setup(cmd))
    assert "***" in cmd.command
    assert cmd.tasks == ["mmlu"]


def test_shell_around_the_command_is_left_out():
    cmd = parse_lm_eval_command("cd lm-evaluation-harness && python -m lm_eval --model hf --model_args pretrained=gpt2 --tasks piqa 2>&1 | tee log.txt")
    assert cmd.launcher == "python -m lm_eval" and cmd.tasks == ["piqa"] and cmd.env == {} and not cmd.unknown_flags
    nb = parse_lm_eval_command("!lm_eval --model hf --model_args pretrained=gpt2 --tasks piqa --num-fewshot 5")
    assert nb.launcher == "lm_eval" and nb.unknown_flags == ["--num-fewshot 5"] and nb.num_fewshot is None


def test_not_a_command_is_a_typed_error_with_a_hint():
    from hubkit.errors import HubkitError

    for text in ("pip install lm-eval==0.4.5", "lm-eval ls tasks", "lm_eval --help"):
        with pytest.raises(CommandError) as exc:
            parse_lm_eval_command(text)
        assert isinstance(exc.value, HubkitError) and isinstance(exc.value, ValueError)
        assert "python -m lm_eval --model hf" in exc.value.hint


# -- to an eval setup ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [pytest.param("seed", marks=needs_seeds), "fixture"])
def test_seed000_command_gives_the_example_manifest_setup(source):
    """The seed's documented command + pins, through the parser, equal the eval setup the
    project's own example manifest (examples/seed000/hubkit.yaml) was written with."""
    import yaml

    if source == "seed":
        text = next(SEEDS.glob("000_*.txt")).read_text(encoding="utf-8")
        kind, line, end = "text", 48, 53
    else:
        text = (REPO / "tests/data/cards/seed000-shape-4bit-peft-command.md").read_text(encoding="utf-8")
        kind, line, end = "fenced", 37, 42
    found = find_lm_eval_commands(text)
    assert len(found) == 1
    text, loc = found[0]
    assert (loc.kind, loc.line, loc.end_line) == (kind, line, end)
    cmd = parse_lm_eval_command(text, variables=loc.variables)
    pins = {"lm-eval": "==0.4.5", "transformers": "==4.49.0", "peft": "==0.15.2", "bitsandbytes": "==0.43.3", "torch": "==2.5.1+cu124"}
    setup = to_eval_setup(cmd, pins, metrics=["acc_norm"])
    example = yaml.safe_load((REPO / "examples" / "seed000" / "hubkit.yaml").read_text())["evals"]["arc25"]
    for key in ("tasks", "num_fewshot", "metrics", "batch_size", "strategies", "pins", "model_args", "command"):
        assert setup[key] == example[key], key
    assert artifact_hints(cmd) == {"base_model": "golfoscar/mistral-7b-sft-arc", "adapter": "golfoscar/mistral-7b-v0.1-nca-arc-lora", "tokenizer": "mistralai/Mistral-7B-v0.1"}
    assert eval_setup_gaps(cmd, pins) == []
    EvalSetup.model_validate(setup)


def test_strategies_follow_the_documented_load_path():
    def strategies(args: str) -> list[str]:
        return to_eval_setup(parse_lm_eval_command(f"lm_eval --model hf --model_args {args} --tasks arc_easy"))["strategies"]

    assert strategies("pretrained=b,peft=a,load_in_4bit=True") == ["4bit-lora", "merged-fp16"]
    assert strategies("pretrained=b,peft=a,dtype=float32") == ["fp32-lora", "merged-fp16"]
    assert strategies("pretrained=b,peft=a,dtype=bfloat16") == ["bf16-lora", "merged-fp16"]
    assert strategies("pretrained=b,peft=a,dtype=float16") == ["merged-fp16"]
    assert strategies("pretrained=merged") == ["merged-fp16"]


def test_what_a_setup_cannot_hold_is_listed():
    cmd = parse_lm_eval_command(
        "lm_eval --model hf --model_args pretrained=b,peft=a,dtype=bfloat16 --tasks gsm8k --apply_chat_template "
        "--fewshot_as_multiturn --gen_kwargs temperature=0,max_gen_toks=512 --seed 1234 --batch_size auto:4"
    )
    setup = to_eval_setup(cmd)
    assert setup["batch_size"] == "auto:4" and setup["model_args"] == {"dtype": "bfloat16"}
    gaps = " | ".join(eval_setup_gaps(cmd))
    for word in ("--apply_chat_template", "--fewshot_as_multiturn", "--gen_kwargs temperature=0,max_gen_toks=512", "--seed"):
        assert word in gaps
    with pytest.raises(CommandError, match="names no --tasks"):
        to_eval_setup(parse_lm_eval_command("lm_eval --model hf --model_args pretrained=b"))


# -- finding commands in markdown -------------------------------------------------------------------


def test_finds_commands_in_fenced_blocks_of_a_real_card():
    card = (REPO / "tests/data/real/cards/platypus2-70b-instruct.md").read_text(encoding="utf-8")
    found = find_lm_eval_commands(card)
    assert [(loc.kind, loc.line) for _, loc in found] == [("fenced", 59), ("fenced", 64), ("fenced", 69), ("fenced", 74)]
    tasks = [parse_lm_eval_command(c).tasks for c, _ in found]
    assert tasks == [["arc_challenge"], ["hellaswag"], ["hendrycksTest-*"], ["truthfulqa_mc"]]


def test_finds_indented_and_inline_commands_and_block_variables():
    # shapes a card takes around a real script (pfnet-research's harness.sh as an indented block)
    md = (
        "Run it like this:\n\n"
        '    MODEL_ARGS="pretrained=cyberagent/open-calm-1b"\n'
        '    TASK="jsquad-1.1-0.2"\n'
        '    python main.py --model hf-causal --model_args $MODEL_ARGS --tasks $TASK --num_fewshot "2" --device "cuda"\n'
        "\n"
        "or, inline: `lm_eval --model hf --model_args pretrained=gpt2 --tasks piqa`; the tool is `python -m lm_eval`.\n"
    )
    found = find_lm_eval_commands(md)
    assert [loc.kind for _, loc in found] == ["indented", "inline"]
    text, loc = found[0]
    assert loc.line == 5 and loc.variables == {"MODEL_ARGS": "pretrained=cyberagent/open-calm-1b", "TASK": "jsquad-1.1-0.2"}
    cmd = parse_lm_eval_command(text, variables=loc.variables)
    assert cmd.model_args.pretrained == "cyberagent/open-calm-1b" and cmd.tasks == ["jsquad-1.1-0.2"] and cmd.num_fewshot == 2
    assert parse_lm_eval_command(found[1][0]).tasks == ["piqa"]


def test_secret_assignment_in_a_block_is_not_kept():
    md = "```bash\nexport HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789\nlm_eval --model hf --model_args pretrained=gpt2 --tasks piqa\n```\n"
    (text, loc), = find_lm_eval_commands(md)
    assert loc.variables == {"HF_TOKEN": "***"}
