"""`hubkit demo`: the whole pipeline on the offline demo world, step by step.

Each capability adds its step here when it lands, so a newcomer sees everything hubkit does
in a few minutes with no network and no GPU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from .world import build_world

# The demo's local hub listens here, so the repo URLs it prints stay the same from run to run
# (the `hubkit hub serve` default too). Taken by something else: any free port, and it says so.
DEMO_HUB_PORT = 8765


def _start_hub(root: Path, port: int, say: Callable[[str], None]):
    from ..hub.server import LocalHub

    try:
        return LocalHub(root, port=port).start()
    except OSError as exc:
        if port == 0:
            raise
        say(f"   port {port} is busy ({exc.strerror}); the local hub takes a free port instead")
        return LocalHub(root, port=0).start()


def _offline_env() -> None:
    # Never let the demo reach for the network: the Hub is out of reach anyway, and Gradio and
    # huggingface_hub each call home unless told not to.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def run_demo(
    workdir: str | Path,
    *,
    rebuild: bool = False,
    say: Callable[[str], None] = print,
    out: Callable[[str], None] = print,
    serve_seconds: float | None = None,
    hub_port: int = DEMO_HUB_PORT,
) -> dict:
    """Build the demo world in `workdir` and run the whole pipeline on it, ending with the Space
    serving on loopback: until Ctrl-C (`serve_seconds` None), for that many seconds, or not at
    all (0).

    The local hub the demo publishes to serves on `hub_port` (0: any free port) for as long as
    the Space does, so the printed repo URLs open in a browser. Progress goes to `say` (stderr in
    the CLI); where each output lies goes to `out` (stdout). Returns a dict of step name ->
    output location.
    """
    _offline_env()
    from ..inspection import inspect_path
    from ..manifest import load_manifest
    from ..report import format_facts

    workdir = Path(workdir)
    outputs: dict[str, str] = {}
    t0 = time.perf_counter()

    say("== 1. demo world: tokenizer, tiny Mistral base, two LoRA adapters, ARC-format task")
    world = build_world(workdir / "world", force=rebuild, progress=lambda m: say(f"   {m}"))
    outputs["world"] = str(world.paths.root)
    outputs["manifest"] = str(world.paths.manifest)

    say("== 2. manifest: validate")
    manifest = load_manifest(world.paths.manifest)
    say(f"   {world.paths.manifest}: ok ({len(manifest.artifacts)} artifacts, {len(manifest.evals)} eval setup)")

    say("== 3. inspect: facts read from the adapter files")
    for name, art in manifest.artifacts.items():
        if art.kind != "adapter":
            continue  # the merged sibling is made in step 5
        facts = inspect_path(manifest.resolve(art.path))
        for line in format_facts(facts).splitlines()[:10]:
            say(f"   {line}")
        outputs[f"adapter:{name}"] = str(manifest.resolve(art.path))

    say("== 4. eval: lm-eval's arc_challenge on local data; 4-bit NF4 base + LoRA, merged fp16 as fallback")
    from ..eval import run_eval, summarize
    from ..eval.compare import compare_runs, format_comparison
    from ..eval.summary import format_summary

    outcomes = run_eval(manifest, setup="demo", say=say)
    for line in format_summary(summarize(manifest, [o.record for o in outcomes])).splitlines():
        say(f"   {line}")
    by_subject = {o.subject: o.record for o in outcomes}
    say("   paired comparison, lora-half -> lora-full (same documents, per-sample):")
    for line in format_comparison(compare_runs(by_subject["lora-half"], by_subject["lora-full"], iterations=2000)).splitlines():
        say(f"   {line}")
    outputs["runs"] = str(manifest.root / "runs")

    say("== 5. merge: lora-full folded into the base, streamed tensor by tensor, written as fp16")
    from ..merge import merge, read_lineage

    merged_dir = world.paths.root / "merged" / "lora-full"
    if read_lineage(merged_dir) is None or rebuild:
        result = merge(world.paths.adapters["lora-full"], merged_dir, base=world.paths.base, dtype="float16", force=True)
        say(f"   {result.lineage['merged_modules']} LoRA modules merged in {result.seconds:.2f}s -> {merged_dir}")
    lineage = read_lineage(merged_dir)
    say(f"   lineage ({merged_dir.name}/hubkit_merge.json): base sha256 {next(iter(lineage['base']['sha256'].values()))[:12]}..., adapter sha256 {lineage['adapter']['sha256']['adapter_model.safetensors'][:12]}..., r={lineage['adapter']['r']}, dtype {lineage['dtype']}")
    outputs["merged:lora-full"] = str(merged_dir)

    say("== 6. card: a README per adapter from the manifest and the run records")
    from ..card import check_card, render_cards, write_cards

    cards = render_cards(manifest)
    paths = write_cards(cards, world.paths.root / "cards")
    for card, path in zip(cards, paths):
        problems = check_card(manifest, card, path)
        say(f"   {path}" + (f" ({len(problems)} problem(s): {'; '.join(problems)})" if problems else " (front matter parses back; every number backed by a run)"))
        outputs[f"card:{card.name}"] = str(path)

    say("== 7. publish: the base, both adapters and the merged sibling to a local Hub on loopback")
    from ..publish import publish

    hub = _start_hub(workdir / "hub", hub_port, say)
    served = None
    try:  # from here on, Ctrl-C (or any error) still stops the hub and the Space
        result = publish(manifest, endpoint=hub.url, say=lambda m: [say(f"   {line}") for line in m.splitlines()])
        for plan in result.plans:
            outputs[f"repo:{plan.artifact}"] = f"{hub.url}/{plan.repo_id}"

        say("== 8. space: base + both adapters side by side in a Gradio app, deployed to the local hub and served here")
        from ..space_build import build_space, deploy_space, serve_space

        deployed = deploy_space(manifest, endpoint=hub.url, say=lambda m: [say(f"   {line}") for line in m.splitlines()])
        for plan in deployed.plans:
            outputs["space-repo"] = f"{hub.url}/spaces/{plan.repo_id}"
        if serve_seconds != 0:
            build = build_space(manifest, workdir / "space", local=True)
            say(f"   starting the Space from {build.out} (local weights) ...")
            served = serve_space(build.out)
            outputs["space"] = served.url
        outputs["hub"] = hub.url

        say(f"== done in {time.perf_counter() - t0:.1f}s")
        for key, value in outputs.items():
            out(f"{key}\t{value}")
        if serve_seconds != 0:
            say(f"   the local hub is serving on {hub.url} (open the repo URLs above) and the Space on {served.url}, " + ("until Ctrl-C" if serve_seconds is None else f"for {serve_seconds:g}s"))
            say(f"   later, `hubkit hub serve --root {workdir / 'hub'} --port {hub.url.rsplit(':', 1)[1]}` serves the hub again")
            served.wait(serve_seconds)
    except KeyboardInterrupt:  # while the outputs were being printed
        pass
    finally:
        if served is not None:
            served.stop()
        hub.stop()
    return outputs
