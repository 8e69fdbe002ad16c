"""The answer texts of one expert, for the documents of a loaded data set (what a cascade reads)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchcoe_plugins.core.errors import RecordsError
from benchcoe_plugins.core.jsonl import read_jsonl
from benchcoe_plugins.experts.replay import RECORD_TEXT_FIELDS
from benchcoe_plugins.training.dataset import BenchmarkData, stable_id


def record_outputs(data_dir: Path, expert: str, data: BenchmarkData) -> list[str]:
    """From ``records/<expert>.jsonl.gz``: each record's raw output (generated_text / response)."""
    from benchcoe_plugins.training.records import records_format

    fmt = records_format(data_dir)
    texts: dict[str, str] = {}
    for record in read_jsonl(Path(data_dir) / "records" / f"{expert}.jsonl.gz"):
        text = next((record[f] for f in RECORD_TEXT_FIELDS if isinstance(record.get(f), str)), None)
        if text is not None and fmt.key_field in record:
            texts[str(fmt.key_type(record[fmt.key_field]))] = text
    return _in_order(data, {str(d.doc_id): d for d in data.documents}, texts, expert)


def sample_log_outputs(paths: list[str], expert: str, data: BenchmarkData, metric: str | None,
                       filter_name: str | None) -> list[str]:
    """From the expert's ``--log_samples`` rows: the first response of each document."""
    from benchcoe_plugins.training.sample_logs import read_expert_log

    rows, _ = read_expert_log(paths, metric, filter_name=filter_name)
    texts = {str(key): row.output for key, row in rows.items() if row.output is not None}
    return _in_order(data, {str((d.task, stable_id(d))): d for d in data.documents}, texts, expert)


def _in_order(data: BenchmarkData, keyed: dict, texts: dict[str, str], expert: str) -> list[str]:
    lacking = [key for key in keyed if key not in texts]
    if lacking:
        raise RecordsError(f"expert {expert!r}: no answer text for {len(lacking)} of {len(keyed)} documents "
                           f"(e.g. {lacking[:2]}); a cascade reads the first expert's answers, so its records need "
                           f"generated_text / response, or its sample logs resps.")
    order = {id(document): key for key, document in keyed.items()}
    return [texts[order[id(document)]] for document in data.documents]


def expert_outputs(args: argparse.Namespace, expert: str, data: BenchmarkData) -> list[str]:
    """``expert``'s answer texts for ``data``'s documents, from the source the data came from."""
    if args.records:
        return record_outputs(args.records, expert, data)
    if args.samples:
        paths = [item.partition("=")[2] for item in args.samples if item.partition("=")[0] == expert]
        return sample_log_outputs(paths, expert, data, args.metric, getattr(args, "filter_name", None))
    raise RecordsError("a cascade reads the first expert's answer texts: give them with --records or --samples "
                       "(--mmmu is not read for cascades).")
