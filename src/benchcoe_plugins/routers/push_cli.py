"""``benchcoe push ROUTER org/name``: upload a router folder to the hub with a model card
generated from its manifest and held-out evaluation report.

    benchcoe push runs/my_router me/my-router [--revision main] [--private]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("router", help="router folder or shipped router name")
    parser.add_argument("repo_id", help="hub repository org/name")
    parser.add_argument("--revision", default=None, help="branch to push to (default: main)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")


def run(args: argparse.Namespace) -> int:
    from benchcoe_plugins.core.config import resolve_router_path
    from benchcoe_plugins.core.errors import ConfigError
    from benchcoe_plugins.routers.hub import looks_like_hub_id, push_router

    if not looks_like_hub_id(args.repo_id) or "@" in args.repo_id:
        raise ConfigError(f"{args.repo_id!r} is not a hub repository id; write it as org/name.")
    folder = resolve_router_path(args.router, Path.cwd())
    pushed = push_router(folder, args.repo_id, args.revision, args.private)
    print(f"pushed {folder} to {pushed['repo_id']} (commit {pushed['commit']}): {', '.join(pushed['files'])}")
    return 0
