"""The shipped routers' recipe on one expert pool and seed, and the command line and process pool shared by the pool benchmarks."""

from __future__ import annotations

from typing import Any, Callable


def fit_shipped_recipe(data: Any, seed: int, guard_z: float | None = 1.0,
                       subject_prior: float | str = 0.0, query_head: str = "independent",
                       defer_to: str = "subject", neighbours: int = 400,
                       prior_field: str | None = None) -> dict[str, Any]:
    """Random split 60 % train / 10 % validation / 30 % test by ``seed``; subject router (TF-IDF on
    question + options, table shrunk by ``subject_prior``) fitted on train + validation; query router tuned by 5-fold cross-validation
    over train + validation, then fitted on all of it. Returns the parts and both routers."""
    from benchcoe_plugins.routers.query import QueryRouter
    from benchcoe_plugins.routers.subject import SubjectRouter
    from benchcoe_plugins.training.dataset import parts_subset, split_indices

    indices = split_indices(len(data), seed)
    train, validation, test = (data.subset(indices[n]) for n in ("train", "validation", "test"))
    fit = parts_subset(data, indices, ["train", "validation"])
    subject = SubjectRouter(text="question+options", seed=seed, progress=False, guard_z=guard_z,
                            subject_prior=subject_prior)
    subject.fit(fit.documents, fit.correct, fit.experts, subjects=fit.subjects)
    query = QueryRouter(text="question+options", tuning="cv", seed=seed, progress=False, guard_z=guard_z,
                        head=query_head, defer_to=defer_to, neighbours=neighbours, prior_field=prior_field)
    query.fit(train.documents, train.correct, train.experts, subjects=train.subjects,
              validation=(validation.documents, validation.correct, validation.subjects))
    return {"fit": fit, "test": test, "subject": subject, "query": query}


def add_pool_arguments(parser: Any, records: Any, plot: str) -> None:
    from pathlib import Path

    parser.add_argument("--records", type=Path, default=records)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pools", type=int, nargs="+", help="indices into POOLS (default: all)")
    from benchcoe_plugins.training.train_cli import positive_int

    parser.add_argument("--workers", type=positive_int, default=2)
    parser.add_argument("--plot", type=Path, default=Path(plot), help="PNG; the results go beside it as JSON")


def check_pool_indices(parser: Any, args: Any, all_pools: list[list[str]]) -> None:
    """``--pools`` indices must name pools: one line from argparse, not an IndexError later."""
    bad = [i for i in args.pools or [] if not 0 <= i < len(all_pools)]
    if bad:
        parser.error(f"--pools {bad}: indices run from 0 to {len(all_pools) - 1}")


def run_pool_jobs(run_one: Callable[[tuple], dict], all_pools: list[list[str]], args: Any, *extra: Any) -> list[dict]:
    """``run_one((pool, seed, records, *extra))`` for the chosen pools x seeds, in ``args.workers`` processes."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    pools = [all_pools[i] for i in args.pools] if args.pools else all_pools
    jobs = [(pool, seed, str(args.records), *extra) for pool in pools for seed in args.seeds]
    with ProcessPoolExecutor(args.workers) as executor:
        return list(tqdm(executor.map(run_one, jobs), total=len(jobs), desc="pools x seeds"))
