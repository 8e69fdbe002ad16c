"""The CoE config file: one schema for lm-eval's ``coe`` and lmms-eval's ``coemodel``.

Example::

    name: mmlu-pro-coe
    router: mmlu_pro_subject          # a shipped router name or a folder (relative to this file)
    fallback: llama                   # answers documents the router cannot place
    experts:
      llama: {model: hf, model_args: {pretrained: /models/llama-3.1-8b-instruct}}
      phi3:  {model: vllm, model_args: "pretrained=/models/phi-3,tensor_parallel_size=2"}
    question_field: {mmlu_pro*: question}

Everything is validated by ``load_config`` before any model is built.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from benchcoe_plugins.core.documents import DEFAULT_QUESTION_FIELDS
from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.core.model_args import parse_model_args, parse_value
from benchcoe_plugins.experts.replay import REPLAY_MODEL, resolve_replay_paths
from benchcoe_plugins.experts.spec import MODALITIES, ExpertSpec, looks_like_local_path
from benchcoe_plugins.routers.cost import Budget, budget_target, cost_vector, finite_non_negative

TOP_LEVEL_KEYS = {
    "name": "a label for this CoE (optional)",
    "router": "router checkpoint: a name in router_ckpts/, a folder path, or a hub id org/name[@revision]",
    "fallback": "expert for documents the router cannot place",
    "experts": "mapping expert name -> {model, model_args}",
    "question_field": "doc field(s) the router reads, per task pattern",
    "subject_source": "per task pattern, 'field' (the doc's own subject) or 'predicted' (a subject router's "
                      "prediction from the text, the default)",
    "routing_log": "path of the per-document routing log (JSONL)",
    "result_cache": "folder of per-expert result caches (resume), or false",
    "checkpoint_every": "store an expert's answers every N requests (default 1000), so a crash loses little",
    "rank_loading": "'needed' (each rank loads only what it needs) or 'all' (same experts on every rank)",
    "cost_weight": "route by expected accuracy - cost_weight x expert cost (needs a query router)",
    "budget": "{mean_cost: B} or {share: p, expert: NAME}: cost weight calibrated to keep this budget",
    "cost_unit": "'document' (default) or 'token': what an expert's cost is counted per in the spend record",
}
EXPERT_KEYS = {
    "model": "a model name the harness knows (hf, vllm, llava_hf, coe_replay, ...)",
    "model_args": "the expert's own model_args, as a mapping or a 'k=v,k=v' string",
    "modality": "'text' (reads only the text prompt) or 'vision' (reads images too)",
    "handles_text_only": "whether a vision expert can answer documents without an image",
    "isolated": "run the expert in a worker process of its own (default: true for vllm models)",
    "cost": "cost per document (or per token, see cost_unit); default: active_parameters or parameters",
    "parameters": "parameter count in billions (the default cost)",
    "active_parameters": "parameters used per token, for mixture-of-experts models (billions)",
    "router_expert": "the router's expert name(s) this expert plays, for a router trained on other experts",
}
COST_UNITS = ("document", "token")
RANK_LOADING = ("needed", "all")
SUBJECT_SOURCES = ("field", "predicted")
MAX_CONFIG_BYTES = 1 << 20  # a CoE config is a few KB; refuse what can only be a mistake or an attack
MAX_CONFIG_VALUES = 100_000  # values after YAML aliases are expanded (alias bombs expand exponentially)
DEFAULT_RESULT_CACHE = Path(os.environ.get("BENCHCOE_CACHE", "~/.cache/benchcoe_plugins")).expanduser() / "results"


@dataclass
class CoEConfig:
    experts: dict[str, ExpertSpec]
    router: Path
    fallback: str
    name: str = "coe"
    router_expert: dict[str, str] = field(default_factory=dict)
    question_field: dict[str, list[str]] = field(default_factory=dict)
    subject_source: dict[str, str] = field(default_factory=dict)
    routing_log: Path | None = None
    result_cache: Path | None = DEFAULT_RESULT_CACHE
    rank_loading: str = "needed"
    checkpoint_every: int = 1000
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    cost_weight: float | None = None
    budget: Budget | None = None
    cost_unit: str = "document"

    def configured_question_fields(self, task: str) -> list[str] | None:
        """The fields the config names for ``task``; None when no pattern matches it."""
        for pattern, fields in self.question_field.items():
            if fnmatch.fnmatchcase(task, pattern):
                return fields
        return None

    def question_fields_for(self, task: str) -> list[str]:
        return self.configured_question_fields(task) or list(DEFAULT_QUESTION_FIELDS)

    def subject_source_for(self, task: str) -> str:
        """'field' or 'predicted' (default) for ``task``, by the first matching pattern."""
        return next((source for pattern, source in self.subject_source.items() if fnmatch.fnmatchcase(task, pattern)),
                    "predicted")

    def played_by(self, router_expert: str) -> str:
        """The config expert that plays the router's expert ``router_expert`` (the same name unless mapped)."""
        return self.router_expert.get(router_expert, router_expert)

    def router_costs(self, router_experts: Iterable[str]) -> dict[str, float]:
        """Costs keyed by the router's expert names, read through the ``router_expert`` mapping."""
        return {name: self.costs[self.played_by(name)] for name in router_experts if self.played_by(name) in self.costs}

    def output_name(self) -> str:
        """The results folder's name: the config's ``name``, else the router's and experts' names."""
        if self.raw.get("name"):
            return str(self.raw["name"])
        from benchcoe_plugins.routers.registry import read_manifest

        return "__".join([str(read_manifest(self.router).get("name", self.router.name)), *self.experts])


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if duplicate:
                raise ConfigError(f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1}); "
                                  f"keep one (for experts: give each expert its own name).")
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(value: Any) -> None:
    """Count values as a reader of the config would see them, stopping at MAX_CONFIG_VALUES."""
    budget = MAX_CONFIG_VALUES
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(f"config expands to more than {MAX_CONFIG_VALUES} values (nested YAML aliases?); "
                              f"write the values out instead of repeating anchors.")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def read_config_file(path: Path) -> Any:
    """The YAML value of a config file, refused with a ConfigError if too big, not UTF-8, or invalid."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {size} bytes; a CoE config is at most {MAX_CONFIG_BYTES} bytes. "
                          f"Check that --model_args config= names the right file.")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text ({error.reason} at byte {error.start}); "
                          f"save it as UTF-8.") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as error:
        raise ConfigError(f"config file {path}: {error}") from None
    except (yaml.YAMLError, RecursionError) as error:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(error).split())}") from None
    _check_expanded_size(raw)
    return raw


def _optional_text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: {value!r} must be a non-empty string ({TOP_LEVEL_KEYS[key]}).")
    return value


def _unknown_keys(given: Iterable[str], allowed: dict[str, str], where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        listing = ", ".join(f"{key} ({meaning})" for key, meaning in allowed.items())
        raise ConfigError(f"{where}: unknown key(s) {unknown}. Allowed keys: {listing}.")


def _as_mapping(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            return parse_model_args(value)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}. Write it as 'key=value,key=value' or as a mapping.") from None
    if value is None:
        return {}
    raise ConfigError(f"{where} must be a mapping or a 'key=value,...' string, not {type(value).__name__}.")


def _check_weights_exist(spec: ExpertSpec, paths: RelativePaths, where: str) -> ExpertSpec:
    """Local weight and adapter paths resolved by ``paths``; a value that is no folder there is a hub id,
    unless it looks like a local path (or the hub is offline): then it is an error."""
    resolved = dict(spec.model_args)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    for key, weights in spec.weight_arguments().items():
        keys = ("experts", spec.name, "model_args", key)
        candidate = paths.path(weights, *keys)
        if candidate.exists():
            resolved[key] = str(candidate.resolve())
        elif looks_like_local_path(weights) or offline:
            reason = "HF_HUB_OFFLINE is set, so it must be a local folder" if offline else "it looks like a local path"
            raise ConfigError(
                f"{where}.model_args.{key}: {weights!r} does not exist ({reason}). "
                f"Fix the path (relative paths here are read from {paths.folder(*keys)}) or give a hub id."
            )
    return replace(spec, model_args=resolved)


def resolve_router_path(value: str, base: Path) -> Path:
    """A router folder (a relative one under ``base``), a shipped router name, or a hub id
    ``org/name[@revision]`` (downloaded)."""
    from benchcoe_plugins.routers.hub import looks_like_hub_id, snapshot_router
    from benchcoe_plugins.routers.registry import shipped_router_dirs

    candidates = [Path(value).expanduser()]
    if not candidates[0].is_absolute():
        candidates = [base / value] + [d / value for d in shipped_router_dirs()]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    if looks_like_hub_id(value):
        return snapshot_router(value)
    shipped = sorted({p.name for d in shipped_router_dirs() for p in d.iterdir() if p.is_dir()})
    raise ConfigError(
        f"router: {value!r} is neither a folder (looked for {str(candidates[0])!r}), "
        f"a shipped router {shipped} nor a hub id org/name. Give a router checkpoint folder or one of those names."
    )


def closest_name(name: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest of ``choices``, or '' when none is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``router=x`` sets a top-level key; ``experts.NAME.model_args.KEY=v`` a nested one. A key that itself
    holds dots (an expert named ``Qwen1.5-7B-Chat``) is matched whole where the mapping has it. A
    ``cost_weight`` override replaces the file's ``budget`` and a ``budget.*`` override its ``cost_weight``:
    one of them routes, and the command line says which."""
    return _merge_overrides(raw, overrides)[0]


def overrides_under(overrides: dict[str, Any], expert: str) -> set[str]:
    """The settings that ``overrides`` give expert ``expert`` (``experts.NAME.KEY...`` -> KEY)."""
    prefix = f"experts.{expert}."
    return {dotted[len(prefix):].split(".")[0] for dotted in overrides if dotted.startswith(prefix)}


def _merge_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], set[tuple[str, ...]]]:
    """``apply_overrides``, and the key paths the overrides set (e.g. ``("experts", "a", "model_args", "peft")``)."""
    merged = dict(raw)
    keys = {dotted.split(".")[0] for dotted in overrides}
    for given, replaced in (("cost_weight", "budget"), ("budget", "cost_weight")):
        if given in keys and replaced not in keys:
            merged.pop(replaced, None)
    set_paths: set[tuple[str, ...]] = set()
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = merged
        walked: list[str] = []
        while len(parts) > 1:
            # the longest run of parts that names an existing key, else the next part alone
            take = next((n for n in range(len(parts) - 1, 1, -1) if ".".join(parts[:n]) in node), 1)
            key, parts = ".".join(parts[:take]), parts[take:]
            child = node.get(key)
            if walked == ["experts"] and child is None and "model" not in overrides_under(overrides, key):
                import difflib

                close = difflib.get_close_matches(key, [str(name) for name in node], n=1)
                raise ConfigError(f"{dotted}: the config has no expert {key!r} (experts: {sorted(map(str, node))})"
                                  + (f"; did you mean {close[0]!r}?" if close else "; add it with a 'model' too."))
            if isinstance(child, str) and key == "model_args":
                child = _as_mapping(child, dotted)
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
            walked.append(key)
        node[parts[0]] = parse_value(value) if isinstance(value, str) else value
        set_paths.add((*walked, parts[0]))
    return merged, set_paths


@dataclass(frozen=True)
class RelativePaths:
    """The one rule for relative path settings (router, weights and adapters, replay records and logs,
    ``result_cache``, ``routing_log``): a value written in the config file is read from the file's folder,
    a value given as a ``--model_args`` override (or in a config passed as a mapping) from the working
    folder. Only that one folder is looked in."""

    config_folder: Path
    overridden: frozenset[tuple[str, ...]] = frozenset()

    def folder(self, *keys: str) -> Path:
        """The folder a relative value at ``keys`` (e.g. ``"experts", "a", "model_args", "pretrained"``)
        is read from: the working folder when an override set that key or one holding it."""
        from_command_line = any(keys[:n] in self.overridden for n in range(1, len(keys) + 1))
        return Path.cwd() if from_command_line else self.config_folder

    def path(self, value: str | os.PathLike, *keys: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.folder(*keys) / path


def load_config(
    source: str | os.PathLike | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    known_models: Callable[[], Iterable[str]] | None = None,
    default_modality: str = "text",
) -> CoEConfig:
    """Read and validate a CoE config; raises ConfigError naming the key and the fix."""
    if isinstance(source, dict):
        raw, base, path = dict(source), Path.cwd(), None
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found. Pass --model_args config=/path/to/coe.yaml.")
        raw = read_config_file(path)
        base = path.parent.resolve()
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path or ''} must be a YAML mapping with keys {sorted(TOP_LEVEL_KEYS)}.")
    raw, overridden = _merge_overrides(raw, overrides or {})
    paths = RelativePaths(base, frozenset(overridden))
    _check_expanded_size(raw)
    _unknown_keys(raw, TOP_LEVEL_KEYS, "config")

    experts_raw = raw.get("experts")
    if not isinstance(experts_raw, dict) or not experts_raw:
        raise ConfigError("config: 'experts' must map at least one expert name to {model: ..., model_args: ...}.")
    known = set(known_models()) if known_models else None
    experts: dict[str, ExpertSpec] = {}
    costs: dict[str, float] = {}
    for name, entry in experts_raw.items():
        where = f"experts.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping with keys {sorted(EXPERT_KEYS)}.")
        _unknown_keys(entry, EXPERT_KEYS, where)
        model = entry.get("model")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{where}.model is missing: name a harness model such as 'hf'.")
        if known is not None and model not in known:
            raise ConfigError(
                f"{where}.model: {model!r} is not a model this harness knows. "
                f"Known models: {', '.join(sorted(known))}."
            )
        modality = entry.get("modality", default_modality)
        if modality not in MODALITIES:
            raise ConfigError(f"{where}.modality: {modality!r} must be one of {MODALITIES}.")
        handles_text_only = entry.get("handles_text_only", modality == "text")
        if not isinstance(handles_text_only, bool):
            raise ConfigError(f"{where}.handles_text_only must be true or false.")
        isolated = entry.get("isolated", model.startswith("vllm"))
        if not isinstance(isolated, bool):
            raise ConfigError(f"{where}.isolated must be true or false.")
        model_args = _as_mapping(entry.get("model_args"), f"{where}.model_args")
        bad_keys = [key for key in model_args if not isinstance(key, str) or not key.isidentifier()]
        if bad_keys:
            raise ConfigError(f"{where}.model_args: key(s) {bad_keys} are not argument names; use names such as "
                              f"'pretrained' or 'dtype'.")
        spec = ExpertSpec(str(name), model, model_args, modality, handles_text_only, isolated)
        if model == REPLAY_MODEL:
            try:
                spec = replace(spec, model_args=resolve_replay_paths(
                    model_args, lambda key: paths.folder("experts", str(name), "model_args", key)))
            except ConfigError as error:
                raise ConfigError(f"{where}.model_args: {error}") from None
            experts[str(name)] = spec
        else:
            experts[str(name)] = _check_weights_exist(spec, paths, where)
        cost = _expert_cost(entry, where)
        if cost is not None:
            costs[str(name)] = cost

    router_value = raw.get("router")
    if not isinstance(router_value, str) or not router_value:
        raise ConfigError("config: 'router' is missing: name a router folder (e.g. router_ckpts/mmlu_pro_subject).")
    router = resolve_router_path(router_value, paths.folder("router"))

    fallback = raw.get("fallback", next(iter(experts)))
    if not isinstance(fallback, str) or fallback not in experts:
        raise ConfigError(f"fallback: {fallback!r} is not an expert of this config; choose one of {sorted(experts)}.")

    question_field: dict[str, list[str]] = {}
    question_field_raw = raw.get("question_field") or {}
    if not isinstance(question_field_raw, dict):
        raise ConfigError(f"question_field: {question_field_raw!r} must map task patterns to field names, "
                          f"e.g. {{mmlu_pro*: question}}.")
    for pattern, fields in question_field_raw.items():
        fields = [fields] if isinstance(fields, str) else fields
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields) or not fields:
            raise ConfigError(f"question_field.{pattern} must be a field name or a list of field names.")
        question_field[str(pattern)] = fields

    subject_source = raw.get("subject_source") or {}
    if not isinstance(subject_source, dict) or not all(v in SUBJECT_SOURCES for v in subject_source.values()):
        raise ConfigError(f"subject_source must map task patterns to one of {SUBJECT_SOURCES}, e.g. "
                          f"{{mmmu_val: field, mmstar: predicted}}; got {subject_source!r}.")

    rank_loading = raw.get("rank_loading", "needed")
    if rank_loading not in RANK_LOADING:
        raise ConfigError(f"rank_loading: {rank_loading!r} must be one of {RANK_LOADING}.")

    checkpoint_every = raw.get("checkpoint_every", 1000)
    if not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool) or checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every: {checkpoint_every!r} must be a positive integer.")

    router_expert = _router_expert_mapping(experts_raw)

    result_cache = raw.get("result_cache", DEFAULT_RESULT_CACHE)
    if result_cache is True:
        result_cache = DEFAULT_RESULT_CACHE
    if not isinstance(result_cache, (str, Path, bool, type(None))) or result_cache == "":
        raise ConfigError(f"result_cache: {result_cache!r} must be a folder path, or false to disable the cache.")
    routing_log = _optional_text(raw, "routing_log")
    name = raw.get("name", path.stem if path else "coe")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name: {name!r} must be a non-empty string ({TOP_LEVEL_KEYS['name']}).")
    config = CoEConfig(
        experts=experts,
        router=router,
        fallback=fallback,
        name=name,
        router_expert=router_expert,
        question_field=question_field,
        subject_source={str(k): v for k, v in subject_source.items()},
        routing_log=paths.path(routing_log, "routing_log") if routing_log else None,
        result_cache=paths.path(result_cache, "result_cache") if result_cache else None,
        rank_loading=rank_loading,
        checkpoint_every=checkpoint_every,
        source=path,
        raw=raw,
        costs=costs,
        **_cost_policy(raw),
    )
    _check_router_matches(config)
    _check_output_path(config.routing_log, "routing_log", folder=False)
    _check_output_path(config.result_cache, "result_cache", folder=True)
    return config


def _check_output_path(path: Path | None, key: str, folder: bool) -> None:
    """A path the run writes at its end must be writable as what it is (a file or a folder), or the
    finished evaluation would be lost to an error after all the work."""
    if path is None:
        return
    if not folder and path.is_dir():
        raise ConfigError(f"{key}: {path} is a folder; give a file path, e.g. {path / 'routing.jsonl'}.")
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{key}: {path} is a file; give a folder path for the cache.")
    ancestor = next((parent for parent in path.parents if parent.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise ConfigError(f"{key}: {path} lies under {ancestor}, which is a file; give a path under a folder.")


def _expert_cost(entry: dict[str, Any], where: str) -> float | None:
    for key in ("cost", "active_parameters", "parameters"):
        if entry.get(key) is not None:
            value = finite_non_negative(entry[key], f"{where}.{key}")
            for other in ("active_parameters", "parameters"):  # validated even where cost wins
                if entry.get(other) is not None:
                    finite_non_negative(entry[other], f"{where}.{other}")
            return value
    return None


def _cost_policy(raw: dict[str, Any]) -> dict[str, Any]:
    cost_unit = raw.get("cost_unit", "document")
    if cost_unit not in COST_UNITS:
        raise ConfigError(f"cost_unit: {cost_unit!r} must be one of {COST_UNITS}.")
    cost_weight = raw.get("cost_weight")
    budget_raw = raw.get("budget")
    if cost_weight is not None and budget_raw is not None:
        raise ConfigError("give either cost_weight or budget, not both (a budget sets the cost weight itself); "
                          "remove one of them.")
    budget = None
    if budget_raw is not None:
        if not isinstance(budget_raw, dict):
            raise ConfigError("budget must be a mapping: {mean_cost: B} or {share: p, expert: NAME}.")
        _unknown_keys(budget_raw, {"mean_cost": "mean cost per document", "share": "largest share of documents "
                                   "for budget.expert", "expert": "the expert share counts (default: the most "
                                   "expensive)"}, "budget")
        budget = Budget(*(None if budget_raw.get(k) is None else finite_non_negative(budget_raw[k], f"budget.{k}")
                          for k in ("mean_cost", "share")), budget_raw.get("expert"))
        budget_target(budget)
    return {"cost_unit": cost_unit, "budget": budget,
            "cost_weight": None if cost_weight is None else finite_non_negative(cost_weight, "cost_weight")}


def _check_router_matches(config: CoEConfig) -> None:
    from benchcoe_plugins.routers.registry import read_manifest

    manifest = read_manifest(config.router)
    router_experts = manifest.get("experts", [])
    missing = sorted(set(router_experts) - set(config.experts))
    if config.router_expert:
        _check_router_expert_mapping(config, router_experts)
    elif missing:
        raise ConfigError(
            f"router {config.router.name!r} routes to expert(s) {missing} that the config does not define "
            f"(config experts: {sorted(config.experts)}). Add them under 'experts:' with these names, "
            f"or use a router trained on this expert set."
        )
    kind = manifest.get("kind")
    wrong = {p: s for p, s in config.subject_source.items()
             if kind not in ("subject", "table") or (kind == "table" and s == "predicted")}
    if wrong:
        raise ConfigError(
            f"subject_source {wrong}: router {config.router.name!r} is a {kind} router; 'predicted' needs a subject "
            f"router (a text classifier of subjects), 'field' a subject or table router. Remove those entries or "
            f"use such a router."
        )
    stored = manifest.get("costs") or {}  # costs the router was trained with (benchcoe train --costs), by its names
    for router_name in router_experts:
        name = config.played_by(router_name)
        if name in config.experts and name not in config.costs and isinstance(stored.get(router_name), (int, float)):
            config.costs[name] = float(stored[router_name])
    if config.cost_weight is not None or config.budget is not None:
        if manifest.get("kind") not in ("query", "cascade"):
            raise ConfigError(f"cost_weight/budget need a query or cascade router (they score every expert's "
                              f"accuracy per document); router {config.router.name!r} is a {manifest.get('kind')} "
                              f"router.")
        cost_vector(router_experts, config.router_costs(router_experts), "cost_weight/budget")


def _router_expert_mapping(experts_raw: dict[str, Any]) -> dict[str, str]:
    """Router expert name -> the config expert that plays it, from each expert's ``router_expert``."""
    mapping: dict[str, str] = {}
    for name, entry in experts_raw.items():
        played = entry.get("router_expert", [])
        played = [played] if isinstance(played, str) else played
        if not isinstance(played, list) or not all(isinstance(p, str) and p for p in played):
            raise ConfigError(f"experts.{name}.router_expert must be a router expert name or a list of them.")
        for router_name in played:
            if router_name in mapping:
                raise ConfigError(f"router_expert: {router_name!r} is played by both {mapping[router_name]!r} "
                                  f"and {name!r}; map each router expert once.")
            mapping[router_name] = str(name)
    return mapping


def _check_router_expert_mapping(config: CoEConfig, router_experts: list[str]) -> None:
    """Every router expert played by exactly one expert of the config; names checked against the router's."""
    mapping = config.router_expert
    unknown = [(name, expert) for name, expert in mapping.items() if name not in router_experts]
    if unknown:
        listing = "; ".join(f"experts.{expert}.router_expert: {name!r}{closest_name(name, router_experts)}"
                            for name, expert in unknown)
        raise ConfigError(f"{listing}: not an expert of router {config.router.name!r}, whose experts are "
                          f"{router_experts}.")
    unmapped = [name for name in router_experts if name not in mapping]
    if unmapped:
        raise ConfigError(f"router_expert: router expert(s) {unmapped} are played by no expert. Add "
                          f"'router_expert: NAME' to the expert of this config that plays each of them.")
