"""Peak memory: a CoE of three experts of clearly different sizes versus its largest expert
run alone, each as a real ``lm_eval`` CLI run on the same local task (CPU).

The CoE frees each expert before loading the next, so its peak should be that of its
largest expert, not the sum. Peak RSS is ``ru_maxrss`` of the run's process, measured by a
wrapper that runs the lm_eval CLI in-process (`_workspace.measure_lm_eval`).

    python benchmarks/peak_memory.py [--docs 30]
"""

from __future__ import annotations

import argparse

from _workspace import (SUBJECTS, build_experts, measure_lm_eval, round_robin, scratch_folder, write_coe_config,
                        write_task)

SIZES = {"small": (256, 4), "medium": (1280, 6), "large": (1536, 10)}  # hidden size, layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=30)
    args = parser.parse_args()

    root = scratch_folder("benchcoe-memory-")
    experts = build_experts(root / "experts", SIZES)
    sizes_mb = {n: sum(f.stat().st_size for f in p.glob("*.safetensors")) / 2**20 for n, p in experts.items()}
    names = list(experts)
    write_coe_config(root, experts, round_robin(SUBJECTS, names))
    tasks = write_task(root / "tasks", args.docs, max_gen_toks=4)
    common = ["--tasks", "bench_gen", "--include_path", str(tasks), "--device", "cpu", "--batch_size", "1"]

    alone = measure_lm_eval(["--model", "hf", "--model_args", f"pretrained={experts['large']}", *common],
                            root)["max_rss_mb"]
    coe = measure_lm_eval(["--model", "coe", "--model_args", "config=coe.yaml", *common], root)["max_rss_mb"]
    print("expert weights (MB): " + ", ".join(f"{n} {s:.0f}" for n, s in sizes_mb.items()))
    print(f"peak RSS, largest expert alone:   {alone:.0f} MB")
    print(f"peak RSS, CoE of the three:       {coe:.0f} MB")
    print(f"ratio coe / largest alone: {coe / alone:.3f} (the sum of the experts' weights would add "
          f"{sizes_mb['small'] + sizes_mb['medium']:.0f} MB)")


if __name__ == "__main__":
    main()
