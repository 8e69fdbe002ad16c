"""``benchcoe rerun RESULTS_DIR``: run a CoE again from the record in its results JSON.

    benchcoe rerun results/toy-coe                   # writes results/toy-coe_rerun/
    benchcoe rerun results/toy-coe --dry-run         # print the rebuilt config and command only

The config is rebuilt from ``coe.config`` with the router copy kept beside the outputs and
the experts' resolved weight paths; the harness command is the recorded one with a new
``--model_args`` and ``--output_path``, without ``--use_cache``. Experts run again (result cache off, no
harness answer cache) unless ``--use-result-cache`` is given. A weights revision or chat template that differs from the
record is reported before the run starts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from benchcoe_plugins.core.errors import ConfigError

HARNESS_MODULES = ("lm_eval", "lmms_eval")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results_dir", type=Path, help="a folder holding a CoE's results_*.json")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default: RESULTS_DIR_rerun)")
    parser.add_argument("--use-result-cache", action="store_true",
                        help="serve answers from the recorded result cache instead of running the experts")
    parser.add_argument("--dry-run", action="store_true", help="write the config and print the command; do not run")


def recorded_run(results_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest results JSON under ``results_dir`` that holds a CoE record, and that record."""
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir} is not a folder. Pass the --output_path folder of a CoE run.")
    found = set(results_dir.rglob("results_*.json")) | set(results_dir.rglob("*_results.json"))  # lm-eval, lmms-eval
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            results = json.loads(path.read_text())
        except (ValueError, RecursionError):
            print(f"benchcoe rerun: warning: {path} is not valid JSON; skipped", file=sys.stderr)
            continue
        if not isinstance(results, dict):
            continue
        config = results.get("config")
        coe = (config.get("coe") if isinstance(config, dict) else None) or results.get("coe")
        if isinstance(coe, dict) and isinstance(coe.get("reproducibility"), dict):
            problem = record_problem(coe)
            if problem:
                raise ConfigError(f"{path}: its CoE record {problem}, so the run cannot be rebuilt (was the file "
                                  f"edited or cut short?). Rerun from the results folder as the run wrote it.")
            return path, coe
    raise ConfigError(f"no results_*.json with a CoE reproducibility record under {results_dir}. "
                      f"Rerun needs the output of 'lm_eval --model coe' or 'lmms_eval --model coemodel' "
                      f"from benchcoe-plugins with this feature.")


def record_problem(coe: dict[str, Any]) -> str | None:
    """What a CoE record lacks that a rerun reads, in words; None when it is whole."""
    def mapping_of_mappings(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())

    record = coe["reproducibility"]
    config, experts = coe.get("config"), coe.get("experts")
    checks = [
        (isinstance(config, dict) and mapping_of_mappings(config.get("experts")), "has no config with its experts"),
        (mapping_of_mappings(experts) and all(isinstance(e.get("model_args"), dict) for e in experts.values()),
         "has no experts with their model_args"),
        (isinstance(record.get("router"), dict) and isinstance(record["router"].get("sha256"), str),
         "has no router checksum"),
        (isinstance(record.get("harness"), str), "names no harness"),
        (isinstance(record.get("command"), list) and all(isinstance(w, str) for w in record["command"]),
         "has no command as a list of words"),
        (isinstance(record.get("versions"), dict), "has no package versions"),
        (mapping_of_mappings(record.get("experts")), "has no expert revisions"),
    ]
    return next((problem for fine, problem in checks if not fine), None)


def router_copy(results_dir: Path, results_file: Path, copy_name: str) -> Path | None:
    """The recorded router copy: beside the results JSON, else anywhere under the results folder (runs
    before stop 26 wrote it beside the routing log, which ``routing_log:`` could put in a subfolder).
    Its checksum is checked by the caller."""
    beside = results_file.parent / copy_name
    if beside.is_dir():
        return beside
    return next((p for p in sorted(results_dir.rglob(copy_name)) if p.is_dir()), None)


def rebuilt_config(results_file: Path, coe: dict[str, Any], use_result_cache: bool,
                   results_dir: Path | None = None) -> dict[str, Any]:
    from benchcoe_plugins.routers.base import folder_checksum

    record = coe["reproducibility"]
    copy_name = record["router"].get("copy")
    router = router_copy(results_dir or results_file.parent, results_file, str(copy_name)) if copy_name else None
    if router is None:
        raise ConfigError(f"the router copy {copy_name!r} is not under {results_dir or results_file.parent}; "
                          f"copy the whole results folder, router_* included.")
    if folder_checksum(router) != record["router"]["sha256"]:
        raise ConfigError(f"{router} does not match the recorded router checksum; the copy was changed.")
    config = dict(coe["config"])
    config["router"] = str(router.resolve())
    config["experts"] = {name: {**entry, "model_args": coe["experts"][name]["model_args"]}
                         for name, entry in config["experts"].items()}
    config.pop("routing_log", None)
    cache = config.get("result_cache")
    if not use_result_cache:
        config["result_cache"] = False
    elif isinstance(cache, str) and not Path(cache).expanduser().is_absolute():
        # the rebuilt config lives elsewhere, so a relative folder is pinned to the one the run read
        config["result_cache"] = str(recorded_folder(coe, "result_cache") / cache)
    return config


def recorded_folder(coe: dict[str, Any], key: str) -> Path:
    """The folder the recorded run read a relative path setting ``key`` from: its working folder when
    the setting came from ``--model_args`` (or there was no config file), else the config file's folder."""
    record = coe["reproducibility"]
    given_on_command_line = key in model_args_given(record.get("command") or [])
    if coe.get("config_file") and not given_on_command_line:
        return Path(coe["config_file"]).resolve().parent
    return Path(record.get("cwd") or ".")


def model_args_given(command: list[str]) -> dict[str, Any]:
    """The ``--model_args`` settings of a recorded harness command: lmms-eval takes one ``k=v,k=v``
    string; lm-eval also takes several such words, or a JSON object."""
    given: dict[str, Any] = {}
    for flag, words in flag_groups(command[1:]):
        if flag == "--model_args":
            values = [words[0].partition("=")[2]] if "=" in words[0] else words[1:]
            for value in values:
                given.update(_parsed_model_args(value))
    return given


def flag_groups(args: list[str]) -> list[tuple[str | None, list[str]]]:
    """The recorded arguments in order, grouped: (flag by its long name, [the flag's word, its values]);
    a ``--flag=value`` word takes no further values, and words before any flag group under None."""
    groups: list[tuple[str | None, list[str]]] = []
    for arg in args:
        if arg.startswith("-"):
            flag = arg.split("=", 1)[0]
            groups.append((FLAG_ALIASES.get(flag, flag), [arg]))
            if "=" in arg:
                groups.append((None, []))
        elif groups:
            groups[-1][1].append(arg)
        else:
            groups.append((None, [arg]))
    return groups


def _parsed_model_args(text: str) -> dict[str, Any]:
    from benchcoe_plugins.core.model_args import parse_model_args

    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    try:
        return parse_model_args(text)
    except ValueError:
        return {}


def revision_changes(config_file: Path, record: dict[str, Any]) -> list[str]:
    from benchcoe_plugins.core.config import load_config
    from benchcoe_plugins.core.provenance import expert_revision

    changes = []
    for name, spec in load_config(config_file).experts.items():
        now, then = expert_revision(spec), record["experts"].get(name, {})
        for key in ("revision", "adapters", "tokenizer", "chat_template_sha256"):
            if now.get(key) != then.get(key):
                changes.append(f"expert {name}: {key} was {then.get(key)} and is now {now.get(key)}")
    return changes


DROPPED_FLAGS = ("--use_cache",)  # a harness answer cache would replay the run instead of running the experts
FLAG_ALIASES = {"-a": "--model_args", "-o": "--output_path", "-c": "--use_cache"}


def rerun_command(record: dict[str, Any], config_file: Path, output: Path, keep_caches: bool = False) -> list[str]:
    harness = record["harness"]
    if harness not in HARNESS_MODULES:
        raise ConfigError(f"unknown harness {harness!r} in the record; expected one of {HARNESS_MODULES}.")
    replaced = {"--model_args": f"config={config_file}", "--output_path": str(output)}
    dropped = () if keep_caches else DROPPED_FLAGS
    command = [sys.executable, "-m", harness]
    for flag, words in flag_groups(list(record["command"][1:])):
        if flag in replaced:
            command += [flag, replaced.pop(flag)]
        elif flag not in dropped:
            command += words
    return command + [part for flag, value in replaced.items() for part in (flag, value)]


def run(args: argparse.Namespace) -> int:
    results_dir = args.results_dir.resolve()
    results_file, coe = recorded_run(results_dir)
    record = coe["reproducibility"]
    config = rebuilt_config(results_file, coe, args.use_result_cache, results_dir)
    output = (args.output or results_dir.with_name(results_dir.name + "_rerun")).resolve()
    output.mkdir(parents=True, exist_ok=True)
    config_file = output / "coe.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    from benchcoe_plugins.core.provenance import package_versions

    now = package_versions()
    for package, then in record.get("versions", {}).items():
        if now.get(package) != then:
            print(f"benchcoe rerun: warning: {package} was {then} and is now {now.get(package)}", file=sys.stderr)
    for change in revision_changes(config_file, record):
        print(f"benchcoe rerun: warning: {change}; answers may differ from the record", file=sys.stderr)
    command = rerun_command(record, config_file, output, keep_caches=args.use_result_cache)
    cwd = record.get("cwd") if Path(record.get("cwd") or "").is_dir() else None
    print(f"benchcoe rerun: recorded with {', '.join(f'{k} {v}' for k, v in record['versions'].items() if v)}")
    print(f"benchcoe rerun: config {config_file}")
    print("benchcoe rerun: " + " ".join(command))
    if args.dry_run:
        return 0
    return subprocess.call(command, cwd=cwd)
