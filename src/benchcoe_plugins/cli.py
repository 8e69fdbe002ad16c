"""``benchcoe``: train, evaluate and report routers; prepare offline data; run the demo.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchcoe_plugins.core.errors import DEBUG_ENV, BenchCoEError, debugging

SUBCOMMANDS = {
    "train": ("benchcoe_plugins.training.train_cli", "train a router from sample logs or records"),
    "evaluate": ("benchcoe_plugins.training.evaluate_cli", "evaluate a router on held-out documents"),
    "report": ("benchcoe_plugins.training.report_cli", "per-subject comparison plot and table"),
    "offline-data": ("benchcoe_plugins.offline.cli", "seed the datasets cache so stock tasks run offline"),
    "inspect": ("benchcoe_plugins.routers.inspect_cli", "show a router's experts, training data and evaluation"),
    "push": ("benchcoe_plugins.routers.push_cli", "upload a router to the hub with a generated model card"),
    "rerun": ("benchcoe_plugins.core.rerun_cli", "rerun a results folder with the config and router it recorded"),
    "cache": ("benchcoe_plugins.experts.cache_cli", "list or clear the per-expert result cache"),
    "demo": ("benchcoe_plugins.demo", "the embedded default: replay CoEs on MMLU-Pro (lm-eval) and MMMU-Pro (lmms-eval), no GPU"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="benchcoe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sub_parser)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except BenchCoEError as error:
        if debugging():
            raise
        print(f"benchcoe {args.command}: error: {error} (set {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
