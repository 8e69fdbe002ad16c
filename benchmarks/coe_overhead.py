"""CoE overhead: one ``coe`` evaluation versus the same experts run directly.

Both sides run in this process with lm-eval's real classes, on the same requests (a local
generate_until task over N documents, tiny random-weight Llama experts):

- CoE: build the ``coe`` model and answer all requests (routing, loading each expert,
  inference, freeing);
- direct: for each expert, build it with lm-eval's ``hf`` model and answer exactly the
  requests the router sent to it.

Model loading and inference count on both sides; interpreter start-up and task building
on neither. The router's own time is printed separately. Repeated, alternating sides.

    python benchmarks/coe_overhead.py [--docs 240] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from _workspace import SUBJECTS, build_experts, round_robin, scratch_folder, write_coe_config, write_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-gen-toks", type=int, default=16)
    args = parser.parse_args()

    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager, get_task_dict

    from benchcoe_plugins.adapters.lm_eval.coe_lm import CoELM

    root = scratch_folder("benchcoe-overhead-")
    experts = build_experts(root / "experts", {"small": (64, 2), "medium": (128, 4), "large": (192, 6)})
    names = list(experts)
    write_coe_config(root, experts, round_robin(SUBJECTS, names), {"batch_size": 8, "device": "cpu"})

    task = get_task_dict(["bench_gen"], TaskManager(include_path=str(write_task(root / "tasks", args.docs,
                                                                                args.max_gen_toks))))["bench_gen"]
    task.build_all_requests(limit=None, rank=0, world_size=1)
    requests = list(task.instances)

    routed: dict[str, list] = {n: [] for n in names}  # the router's choice, computed once up front
    probe = CoELM(config=str(root / "coe.yaml"))
    for request, expert in zip(requests, probe.session.route([probe._document(r) for r in requests])):
        routed[expert].append(request)

    def run_coe() -> float:
        start = time.perf_counter()
        coe = CoELM(config=str(root / "coe.yaml"))
        coe.generate_until(requests)
        loads.append(dict(coe.session.pool.loads))
        return time.perf_counter() - start

    def run_direct() -> float:
        # each expert is freed like the CoE frees it (del + gc), as separate runs would by exiting
        start = time.perf_counter()
        for name, share in routed.items():
            model = get_model("hf").create_from_arg_string("", {"pretrained": str(experts[name]), "batch_size": 8,
                                                                 "device": "cpu"})
            model.generate_until(share)
            del model
            gc.collect()
        return time.perf_counter() - start

    loads: list[dict] = []
    run_direct()  # warm-up: first imports and file-system caches, measured by neither side
    coe_times, direct_times, router_times = [], [], []
    for repeat in range(args.repeats):
        order = (run_coe, run_direct) if repeat % 2 == 0 else (run_direct, run_coe)
        for side in order:
            (coe_times if side is run_coe else direct_times).append(side())
        router = CoELM(config=str(root / "coe.yaml"))
        start = time.perf_counter()
        router.session.route([router._document(r) for r in requests])
        router_times.append(time.perf_counter() - start)

    coe_median, direct_median = statistics.median(coe_times), statistics.median(direct_times)
    print(f"documents: {len(requests)}; routed: { {n: len(r) for n, r in routed.items()} }; repeats: {args.repeats}")
    print(f"direct (sum of experts on their routed documents): median {direct_median:.2f} s")
    print(f"coe (same requests, routing included once):          median {coe_median:.2f} s "
          f"(expert loads per run: {loads[-1]})")
    print(f"router share (routing all documents, inside the coe time): median "
          f"{statistics.median(router_times) * 1000:.1f} ms")
    print(f"overhead ratio coe / direct: {coe_median / direct_median:.3f}")


if __name__ == "__main__":
    main()
