"""Run inside an eval environment: lm-eval on a 4-bit NF4 base + LoRA adapter, built by hand.

transformers >= 5 rejects the flat `load_in_4bit=True,bnb_4bit_*` model_args that older cards
use, so the quantized base is built here with a BitsAndBytesConfig, the adapter attached with
peft, and the model handed to lm_eval.simple_evaluate. Output files are lm-eval's own (results
JSON and per-sample JSONL), written by its EvaluationTracker exactly as the CLI writes them.

Usage: python runner_4bit.py CALL.json [OUTPUT_DIR]
(hubkit copies this file and the call into each run record; OUTPUT_DIR overrides the call's output_path)
"""

import json
import sys


def main(spec_path, output_path=None):
    with open(spec_path) as fh:
        spec = json.load(fh)
    if output_path:
        spec["output_path"] = output_path

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from peft import PeftModel

    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec["bnb_4bit_quant_type"],
        bnb_4bit_use_double_quant=spec["bnb_4bit_use_double_quant"],
        bnb_4bit_compute_dtype=getattr(torch, spec["bnb_4bit_compute_dtype"]),
    )
    device = spec["device"]
    base = AutoModelForCausalLM.from_pretrained(
        spec["pretrained"],
        revision=spec.get("revision"),
        quantization_config=quant,
        device_map="cpu" if device == "cpu" else {"": device},
        dtype=getattr(torch, spec["dtype"]),
        trust_remote_code=spec.get("trust_remote_code", False),
    )
    model = PeftModel.from_pretrained(base, spec["peft"])
    model.eval()
    same_repo = spec["tokenizer"] == spec["pretrained"]
    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"], revision=spec.get("revision") if same_repo else None, trust_remote_code=spec.get("trust_remote_code", False))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=spec["batch_size"], add_bos_token=spec["add_bos_token"])

    task_manager = TaskManager(include_path=spec.get("include_path"), include_defaults=spec["include_defaults"])
    tracker = EvaluationTracker(output_path=spec["output_path"])
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=spec["tasks"],
        num_fewshot=spec.get("num_fewshot"),
        limit=spec.get("limit"),
        gen_kwargs=spec.get("gen_kwargs"),
        task_manager=task_manager,
        log_samples=True,
        evaluation_tracker=tracker,
    )  # lm-eval's default seeds, the same the CLI uses
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])


if __name__ == "__main__":
    main(*sys.argv[1:3])
