"""Command-line options shared by train / evaluate / report: where the expert results are."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.training.dataset import BenchmarkData


# The options naming one source of expert results (argparse dests); --test-source KIND=PATH takes these.
SOURCE_OPTIONS = ("records", "mmmu", "samples")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("expert results (one source)")
    group.add_argument("--records", type=Path, help="records folder: questions.jsonl.gz + records/<model>.jsonl.gz (MMLU-Pro: question_id/category; "
                            "MMMU-Pro: id/subject; told apart by the questions' key field)")
    group.add_argument("--mmmu", type=Path, help="MMMU records folder: answer_dict_val.json + <model>.jsonl.gz")
    group.add_argument("--samples", action="append", default=[], metavar="EXPERT=PATH",
                       help="an expert's harness --log_samples output (file or folder); repeat per expert "
                            "(and per path)")
    group.add_argument("--experts", nargs="+", help="experts to use (record file stems); default: all")
    group.add_argument("--metric", help="sample-log metric giving correctness (default: exact_match, acc, mmmu_acc, ...)")
    group.add_argument("--filter", dest="filter_name", metavar="NAME",
                       help="sample logs of a task scored through several filters (e.g. gsm8k's strict-match / "
                            "flexible-extract): the filter whose score is correctness")
    group.add_argument("--limit", type=int, help="only the first N >= 1 questions (--records only)")
    group.add_argument("--strict-missing", action="store_true",
                       help="fail when some expert lacks documents (default: drop them and report it)")


def given_flags(args: argparse.Namespace, *names: str) -> str:
    """Those of ``names`` (``--flag-name``) the user gave (not None, not a store_true left off), joined by " / "."""
    values = [getattr(args, name.lstrip("-").replace("-", "_")) for name in names]
    return " / ".join(name for name, value in zip(names, values) if value is not None and value is not False)


def require_one_source(args: argparse.Namespace) -> None:
    if sum([bool(args.records), bool(args.mmmu), bool(args.samples)]) != 1:
        raise RecordsError("give exactly one source of expert results: --records, --mmmu or --samples NAME=PATH.")


def check_data_arguments(args: argparse.Namespace) -> None:
    """Refuses, before anything is read, a source option the chosen source would ignore."""
    require_one_source(args)
    output = getattr(args, "output", None)
    if output is not None and Path(output).exists() and not Path(output).is_dir():
        raise RecordsError(f"--output {output} is a file; give a folder (new or existing) for the results.")
    if args.limit is not None and args.limit < 1:
        raise RecordsError(f"--limit {args.limit}: give a whole number >= 1 (the first N questions of --records), "
                           f"or drop --limit to read all of them.")
    test_kind = str(getattr(args, "test_source", None) or "").partition("=")[0].strip().replace("-", "_")
    if args.limit is not None and not args.records and test_kind != "records":
        source = "--samples logs are" if args.samples else "--mmmu records are"
        raise RecordsError(f"--limit {args.limit} takes the first N questions of --records only; {source} read whole. "
                           f"Drop --limit (a harness run with --limit logs fewer documents).")
    if args.samples and args.experts:
        named = {item.partition("=")[0] for item in args.samples}
        lacking = [expert for expert in args.experts if expert not in named]
        if lacking:
            raise RecordsError(f"--experts {lacking}: no --samples NAME=PATH for them (given: {sorted(named)}); "
                               f"add --samples {lacking[0]}=PATH or drop them from --experts.")


def load_data(args: argparse.Namespace) -> BenchmarkData:
    on_missing = "error" if args.strict_missing else "drop"
    require_one_source(args)
    if args.records:
        from benchcoe_plugins.training.records import load_question_records

        data = load_question_records(args.records, args.experts, limit=args.limit, on_missing=on_missing)
    elif args.mmmu:
        from benchcoe_plugins.training.records import load_mmmu

        data = load_mmmu(args.mmmu, args.experts, on_missing=on_missing)
    else:
        from benchcoe_plugins.training.sample_logs import load_sample_logs

        paths: dict[str, list[str]] = {}
        for item in args.samples:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise RecordsError(f"--samples {item!r}: expected EXPERT=PATH.")
            paths.setdefault(name, []).append(path)
        if args.experts:
            paths = {e: paths[e] for e in args.experts if e in paths}
        data = load_sample_logs(paths, metric=args.metric, on_missing=on_missing,
                                filter_name=getattr(args, "filter_name", None))
    if data.missing:
        detail = ", ".join(f"{e}: {len(k)}" for e, k in data.missing.items())
        print(f"benchcoe: {len(set().union(*data.missing.values()))} documents lack some expert's result and "
              f"were left out ({detail}); e.g. {next(iter(data.missing.values()))[:3]}")
    return data
