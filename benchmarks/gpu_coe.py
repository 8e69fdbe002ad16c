"""GPU CoE benchmark: a CoE costs what its experts cost, at real model sizes.

Builds random-weight Llama-architecture experts locally (``--size gpu``: the layer sizes of
Llama-3.2-1B, Llama-3.2-3B and Llama-3.1-8B in bfloat16 on CUDA; ``--size tiny``: two tiny
ones on CPU, so this script runs in CI), then, in one go:

- one real ``lm_eval --model coe`` run with ``hf`` experts on the offline MMLU-Pro copy:
  ``mmlu_pro_<subject>`` tasks (generation, chain-of-thought prompt) and
  ``leaderboard_mmlu_pro`` (log-likelihood over ten options), the same documents by index;
- each expert alone (``lm_eval --model hf``) on exactly the documents the router gave it
  (``--samples``, from the CoE run's routing log).

It prints the CoE wall against the sum of the experts-alone walls, CUDA memory after each
expert is freed against the baseline before the first load (the CoE records it itself with
``BENCHCOE_RECORD_MEMORY=1``), the CoE's peak CUDA memory against the largest expert alone,
peak RSS, and the router's time per document. Without CUDA the GPU lines say so.

    python benchmarks/gpu_coe.py --size tiny
    python benchmarks/gpu_coe.py --size gpu [--docs-per-task 8] [--json figures.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from _workspace import REPO, measure_lm_eval, round_robin, scratch_folder, write_coe_config
from tqdm import tqdm

from benchcoe_plugins.core.documents import normalize_subject
from benchcoe_plugins.experts.memory import RECORD_ENV

LLAMA_3 = {"vocab_size": 128256, "num_key_value_heads": 8, "rope_theta": 500000.0, "rms_norm_eps": 1e-5}
# layer sizes of the public Llama configs; the weights are random
ARCHITECTURES = {
    "gpu": {
        "llama-1b": {**LLAMA_3, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "tie_word_embeddings": True},
        "llama-3b": {**LLAMA_3, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "tie_word_embeddings": True},
        "llama-8b": {**LLAMA_3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "tie_word_embeddings": False},
    },
    "tiny": {
        "small": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
        "large": {"hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 3, "num_attention_heads": 4},
    },
}
# device, dtype, batch size, documents per task, subject tasks, max_gen_toks, few-shot examples (None: the task's)
DEFAULTS = {
    "gpu": {"device": "cuda:0", "dtype": "bfloat16", "batch_size": 8, "docs_per_task": 8, "subjects": 14,
            "max_gen_toks": 64, "num_fewshot": None},
    "tiny": {"device": "cpu", "dtype": "float32", "batch_size": 4, "docs_per_task": 3, "subjects": 1,
             "max_gen_toks": 4, "num_fewshot": 0},
}
AIMS = {"wall": 1.05, "freed_percent": 1.0, "peak": 1.05, "router_percent": 1.0}
NO_CUDA = "not measured: no CUDA"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(ARCHITECTURES), default="tiny")
    parser.add_argument("--docs-per-task", type=int, help="documents of each task (default: by size)")
    parser.add_argument("--subjects", type=int, help="mmlu_pro subject tasks, 1-14 (default: by size)")
    parser.add_argument("--max-gen-toks", type=int)
    parser.add_argument("--num-fewshot", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.size].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if not 1 <= args.subjects <= 14 or args.docs_per_task < 1:
        parser.error("--subjects must be 1-14 and --docs-per-task at least 1")
    return args


def select_documents(subjects: int, per_task: int) -> tuple[dict[str, list[int]], list[str]]:
    """Task -> doc indices (the first of each subject task; leaderboard_mmlu_pro's spread over all
    subjects) and the categories seen."""
    import pyarrow.parquet as pq

    categories = pq.read_table(REPO / "tasks" / "mmlu_pro" / "test.parquet", columns=["category"])
    categories = categories.column("category").to_pylist()
    names = sorted(set(categories))
    samples = {f"mmlu_pro_{c.replace(' ', '_')}": list(range(per_task)) for c in names[:subjects]}
    count = per_task * subjects
    samples["leaderboard_mmlu_pro"] = sorted({i * len(categories) // count for i in range(count)})
    return samples, names


def lm_eval_args(model: str, model_args: str, samples: dict[str, list[int]], out: Path,
                 args: argparse.Namespace) -> list[str]:
    command = ["--model", model, "--model_args", model_args, "--tasks", ",".join(samples),
               "--samples", json.dumps(samples), "--gen_kwargs", f"max_gen_toks={args.max_gen_toks}",
               "--device", args.device, "--batch_size", str(args.batch_size), "--output_path", str(out),
               "--log_samples"]
    return command + (["--num_fewshot", str(args.num_fewshot)] if args.num_fewshot is not None else [])


def read_run(out: Path) -> tuple[dict, dict[tuple[str, int], dict]]:
    from conftest import read_results, read_samples  # the tests' readers of lm_eval's output files

    return read_results(out), read_samples(out)


def routed_samples(routing_log: Path, selection: dict[str, list[int]]) -> dict[str, dict[str, list[int]]]:
    """Expert -> task -> indices of the documents the router gave it. With ``--samples`` the
    requests (and so the routing log) number the selected documents 0..k-1; the sample logs
    give their index in the task."""
    from benchcoe_plugins.core.jsonl import read_jsonl

    routed: dict[str, dict[str, list[int]]] = {}
    for row in read_jsonl(routing_log):
        index = selection[row["task"]][int(row["doc_id"])]
        routed.setdefault(row["expert"], {}).setdefault(row["task"], []).append(index)
    return {e: {t: sorted(ids) for t, ids in tasks.items()} for e, tasks in routed.items()}


def params_label(folder: Path) -> str:
    from safetensors import safe_open

    count = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            count += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
    return f"{count / 1e9:.2f} B" if count >= 1e8 else f"{count / 1e6:.2f} M"


def main() -> None:
    args = parse_args()
    import torch

    cuda = torch.cuda.is_available()
    if args.device.startswith("cuda") and not cuda:
        raise SystemExit(f"--size {args.size} runs on {args.device}, but torch sees no CUDA device here; "
                         f"run it on a GPU machine or use --size tiny")
    from tiny_models import build_llama

    from benchcoe_plugins.offline.seed import seed_mmlu_pro_cache

    root = scratch_folder("benchcoe-gpu-coe-")
    architectures = ARCHITECTURES[args.size]
    experts = {}
    for seed, (name, architecture) in enumerate(tqdm(architectures.items(), desc="building experts")):
        experts[name] = build_llama(root / "experts" / name, seed, architecture, dtype=args.dtype,
                                    device="cuda" if args.device.startswith("cuda") else "cpu")
    seed_mmlu_pro_cache(root / "hf" / "datasets")
    env = {"HF_HOME": str(root / "hf"), "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}
    samples, categories = select_documents(args.subjects, args.docs_per_task)
    names = list(experts)
    write_coe_config(root, experts, round_robin([normalize_subject(c) for c in categories], names),
                     {"dtype": args.dtype})
    n_docs = sum(len(ids) for ids in samples.values())

    progress = tqdm(total=1 + len(names), desc="lm_eval runs")
    coe = measure_lm_eval(lm_eval_args("coe", "config=coe.yaml", samples, root / "out_coe", args), root,
                          {**env, RECORD_ENV: "1"})
    progress.update()
    coe_results, coe_rows = read_run(root / "out_coe")
    record = coe_results["config"]["coe"]
    routed = routed_samples(Path(record["routing_log"]), samples)
    alone: dict[str, dict[str, Any]] = {}
    same_answers = 0
    for name in names:
        if name not in routed:
            progress.update()
            continue
        out = root / f"out_{name}"
        alone[name] = measure_lm_eval(lm_eval_args("hf", f"pretrained={experts[name]},dtype={args.dtype}",
                                                   routed[name], out, args), root, env)
        rows = read_run(out)[1]
        given = {(task, index): row["doc"]["question_id"] for (task, index), row in coe_rows.items()
                 if index in routed[name].get(task, ())}
        if {key: row["doc"]["question_id"] for key, row in rows.items()} != given:
            raise SystemExit(f"expert {name} alone did not answer exactly the documents the router gave it")
        same_answers += sum(row["resps"] == coe_rows[key]["resps"] for key, row in rows.items())
        progress.update()
    progress.close()

    figures = report(args, experts, samples, n_docs, coe, record, routed, alone, same_answers, cuda)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def report(args: argparse.Namespace, experts: dict[str, Path], samples: dict[str, list[int]], n_docs: int,
           coe: dict[str, Any], record: dict[str, Any], routed: dict[str, dict[str, list[int]]],
           alone: dict[str, dict[str, Any]], same_answers: int, cuda: bool) -> dict[str, Any]:
    """Prints the figures; returns them for --json."""
    routed_counts = {n: sum(len(ids) for ids in routed.get(n, {}).values()) for n in experts}
    print(f"size {args.size}: experts " + ", ".join(f"{n} ({params_label(p)} params)" for n, p in experts.items())
          + f"; {args.dtype} on {args.device}, batch size {args.batch_size}")
    print(f"documents: {n_docs} (" + ", ".join(f"{t} {len(ids)}" for t, ids in samples.items())
          + f"); max_gen_toks {args.max_gen_toks}; few-shot "
          + ("the tasks' own" if args.num_fewshot is None else str(args.num_fewshot)))
    print("routed: " + ", ".join(f"{n} {c}" for n, c in routed_counts.items())
          + f"; expert loads in the CoE run: {record['expert_loads']}")
    print(f"same answers, CoE and expert alone: {same_answers}/{n_docs} documents")

    alone_sum = sum(a["evaluation_s"] for a in alone.values())
    wall_ratio = coe["evaluation_s"] / alone_sum
    alone_walls = " + ".join(f"{a['evaluation_s']:.2f}" for a in alone.values())
    print(f"evaluation wall (model creation + lm_eval's evaluate(): loads, inference, freeing): CoE "
          f"{coe['evaluation_s']:.2f} s; experts alone {alone_walls} = {alone_sum:.2f} s; "
          f"ratio {wall_ratio:.3f} (aim <= {AIMS['wall']})")
    process_sum = sum(a["wall_s"] for a in alone.values())
    print(f"process wall (also lm_eval's imports and task building, which each run pays): CoE {coe['wall_s']:.1f} s; "
          f"experts alone {process_sum:.1f} s; ratio {coe['wall_s'] / process_sum:.3f}")

    memory = record.get("memory", [])
    baseline = memory[0] if memory else {}
    freed = {m["expert"]: m for m in memory if m["event"] == "freed"}
    figures: dict[str, Any] = {
        "size": args.size, "documents": n_docs, "routed": routed_counts, "expert_loads": record["expert_loads"],
        "same_answers": same_answers, "coe": coe, "alone": alone, "wall_ratio": wall_ratio,
        "memory_record": memory, "router_seconds": record["router_seconds"],
    }
    # the expert-alone run with the highest peak: on a GPU the largest expert's
    largest = max(alone, key=lambda n: alone[n]["cuda_max_allocated_mb"] or alone[n]["max_rss_mb"])
    if cuda and coe["cuda_max_allocated_mb"] is not None:
        peak = coe["cuda_max_allocated_mb"]
        base = baseline["cuda_allocated_mb"] or 0.0
        parts = []
        for name in experts:
            if name in freed:
                extra = freed[name]["cuda_allocated_mb"] - base
                parts.append(f"{name} {freed[name]['cuda_allocated_mb']:.0f} MB ({extra:+.0f} MB, "
                             f"{100 * extra / peak:.2f} % of the CoE peak)")
            elif name in routed:
                parts.append(f"{name} still loaded at the end of the run")
        print(f"GPU memory allocated after each expert is freed (baseline before the first load {base:.0f} MB; "
              f"aim within {AIMS['freed_percent']} %): " + "; ".join(parts))
        ratio = peak / alone[largest]["cuda_max_allocated_mb"]
        print(f"GPU peak allocated: CoE {peak:.0f} MB; highest expert alone ({largest}) "
              f"{alone[largest]['cuda_max_allocated_mb']:.0f} MB; ratio {ratio:.3f} (aim <= {AIMS['peak']}); "
              f"reserved: CoE {coe['cuda_max_reserved_mb']:.0f} MB, {largest} alone "
              f"{alone[largest]['cuda_max_reserved_mb']:.0f} MB")
        figures["peak_ratio"] = ratio
    else:
        print(f"GPU memory after each expert is freed: {NO_CUDA}")
        print(f"GPU peak, CoE against the largest expert alone: {NO_CUDA}")
    rss_ratio = coe["max_rss_mb"] / alone[largest]["max_rss_mb"]
    print(f"CPU peak RSS: CoE {coe['max_rss_mb']:.0f} MB; experts alone "
          + ", ".join(f"{n} {a['max_rss_mb']:.0f} MB" for n, a in alone.items())
          + f"; CoE / highest alone ({largest}) {rss_ratio:.3f}")
    if baseline:
        print(f"CPU RSS after each expert is freed (baseline before the first load {baseline['rss_mb']:.0f} MB): "
              + ", ".join(f"{n} {m['rss_mb']:.0f} MB" for n, m in freed.items()))
    router_share = 100 * record["router_seconds"] / coe["evaluation_s"]
    print(f"router: {1000 * record['router_seconds']:.2f} ms for {n_docs} documents = "
          f"{1000 * record['router_seconds'] / n_docs:.3f} ms per document, {router_share:.3f} % of the CoE "
          f"evaluation wall "
          f"(aim < {AIMS['router_percent']} %)")
    figures.update(rss_ratio=rss_ratio, router_percent=router_share)
    return figures


if __name__ == "__main__":
    sys.exit(main())
