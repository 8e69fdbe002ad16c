"""``benchcoe cache``: what the result cache holds, and clearing it.

    benchcoe cache list                    # per expert identity: entries, size, date
    benchcoe cache clear                   # every expert's answers
    benchcoe cache clear --expert 3f2a9c   # one expert (identity prefix or expert name)
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.experts.result_store import SUFFIX, describe_store_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchcoe_plugins.core.config import DEFAULT_RESULT_CACHE

    parser.add_argument("action", choices=["list", "clear"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_RESULT_CACHE,
                        help=f"result cache folder (a config's result_cache; default {DEFAULT_RESULT_CACHE})")
    parser.add_argument("--expert", default=None,
                        help="clear only this expert: an identity prefix (from 'list') or the expert's name")


def store_files(folder: Path) -> dict[str, list[Path]]:
    """Identity -> its store files (one per rank), including files set aside as unusable."""
    grouped: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(p for p in folder.glob(f"*.rank*{SUFFIX}*") if p.is_file()):  # only files are the store's
        grouped[path.name.split(".rank")[0]].append(path)
    return dict(grouped)


def run(args: argparse.Namespace) -> int:
    folder = args.dir.expanduser()
    if not folder.is_dir():
        print(f"no result cache at {folder}")
        return 0
    grouped = store_files(folder)
    if args.action == "list":
        if not grouped:
            print(f"{folder}: empty")
        for identity, paths in grouped.items():
            infos = [describe_store_file(p) for p in paths]
            entries = sum(i.get("entries", 0) for i in infos)
            size = sum(i["bytes"] for i in infos) / 1e6
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(i["modified"] for i in infos)))
            label = next((i["expert"] for i in infos if i.get("expert")), "?")
            unusable = [i["file"] for i in infos if "error" in i]
            note = f"  unusable: {unusable}" if unusable else ""
            print(f"{identity[:16]}  {label}  {entries} entries  {size:.2f} MB  {when}{note}")
        return 0
    chosen = grouped
    if args.expert is not None and not args.expert.strip():
        raise ConfigError("--expert is empty (an unset variable?); give an identity prefix or an expert name, or "
                          "leave --expert out to clear every expert.")
    if args.expert:
        chosen = {identity: paths for identity, paths in grouped.items()
                  if identity.startswith(args.expert)
                  or any(str(describe_store_file(p).get("expert") or "").split(" (")[0] == args.expert for p in paths)}
        if not chosen:
            raise ConfigError(f"--expert {args.expert!r} matches no cached expert in {folder}; "
                              f"see 'benchcoe cache list --dir {folder}'.")
    for identity, paths in chosen.items():
        for path in paths:
            path.unlink()
        print(f"cleared {identity[:16]} ({len(paths)} file(s))")
    return 0
