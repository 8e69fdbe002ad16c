"""Your own experts behind a shipped or hub router: ``router_expert`` mapping, ``benchcoe
inspect``, hub routers (offline, from a hub cache laid out as huggingface_hub writes it),
``benchcoe push``, the reproducible record, ``benchcoe rerun`` and the CoE-named output folder.
All harness runs are the real lm_eval CLI on the tiny local experts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, read_results, read_samples, run_cli
from coe_workspace import TABLE, expected_expert, lm_eval_command, lm_eval_refuses, workspace_env
from benchcoe_plugins import cli
from benchcoe_plugins.core.config import load_config
from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.experts.weights_identity import local_weights_hash
from benchcoe_plugins.routers.base import folder_checksum
from benchcoe_plugins.routers.table import TableRouter

OWN_NAMES = {"alpha": "Llama-3.1-8B", "beta": "Phi-3-mini"}  # our expert -> the router expert it plays
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
SHIPPED = REPO / "router_ckpts" / "mmlu_pro_subject"


def write_hub_snapshot(cache: Path, repo_id: str, commit: str, router: Path) -> None:
    """One snapshot of a model repo, laid out as huggingface_hub's cache: blobs by hash, links in snapshots."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for file in sorted(p for p in router.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / file.relative_to(router)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """org/toy-router: commit A routes to the renamed experts, commit B (main) to other names."""
    root = tmp_path_factory.mktemp("hub")
    renamed = {subject: OWN_NAMES[expert] for subject, expert in TABLE.items()}
    TableRouter.from_table(renamed, experts=list(OWN_NAMES.values())).save(root / "a", name="toy-router")
    TableRouter.from_table({"law": "x"}, experts=["x", "y"]).save(root / "b", name="toy-router-b")
    cache = root / "cache"
    write_hub_snapshot(cache, "org/toy-router", COMMIT_A, root / "a")
    write_hub_snapshot(cache, "org/toy-router", COMMIT_B, root / "b")
    (cache / "models--org--toy-router" / "refs" / "main").write_text(COMMIT_B)
    return cache


def hub_env(workspace: Path, hub_cache: Path) -> dict[str, str]:
    return {**workspace_env(workspace), "HF_HUB_CACHE": str(hub_cache)}


def inspect_json(router: str, cwd: Path, env: dict[str, str] | None = None) -> dict:
    return json.loads(run_cli(["benchcoe", "inspect", router, "--json"], cwd=cwd, env=env).stdout)


# -- router_expert --------------------------------------------------------------------------
def test_hub_router_with_own_expert_names_routes_and_names_the_output(workspace, hub_cache) -> None:
    config = yaml.safe_load((workspace / "coe.yaml").read_text())
    del config["name"]
    config.update(router=f"org/toy-router@{COMMIT_A}", result_cache=False)
    for expert, router_name in OWN_NAMES.items():
        config["experts"][expert]["router_expert"] = router_name
    (workspace / "own.yaml").write_text(yaml.safe_dump(config))
    out = workspace / "out_own"
    run_cli(lm_eval_command(workspace, "coe", "config=own.yaml", "out_own", tasks="toy_gen,toy_mc"),
            cwd=workspace, env=hub_env(workspace, hub_cache))
    assert [p.name for p in out.iterdir()] == ["toy-router__alpha__beta"], "named after router + experts"
    samples = read_samples(out)
    rows = [json.loads(line) for line in next(out.rglob("routing_*.jsonl")).read_text().splitlines()]
    assert len(rows) == len(samples) == 6
    for row in rows:
        assert row["expert"] == expected_expert(row["task"], samples[(row["task"], row["doc_id"])]["doc"])
        assert row["router_expert"] in (None, *OWN_NAMES.values())
    assert {row["router_expert"] for row in rows} & set(OWN_NAMES.values())
    record = read_results(out)["config"]["coe"]["reproducibility"]
    assert record["router"]["manifest"]["experts"] == list(OWN_NAMES.values())


def own_config(router: Path, tiny_experts: dict[str, Path], plays: dict[str, str | list[str]]) -> dict:
    return {"router": str(router),
            "experts": {name: {"model": "hf", "model_args": {"pretrained": str(path)},
                               **({"router_expert": plays[name]} if name in plays else {})}
                        for name, path in tiny_experts.items()}}


@pytest.mark.parametrize("plays, message", [
    ({"alpha": "Llama-3.1-8b", "beta": "Phi-3-mini"},
     "experts.alpha.router_expert: 'Llama-3.1-8b' (did you mean 'Llama-3.1-8B'?): not an expert of router"),
    ({"alpha": "Llama-3.1-8B"}, "router expert(s) ['Phi-3-mini'] are played by no expert"),
    ({"alpha": ["Llama-3.1-8B", "Phi-3-mini"], "beta": "Phi-3-mini"},
     "'Phi-3-mini' is played by both 'alpha' and 'beta'; map each router expert once"),
    ({"alpha": 3}, "experts.alpha.router_expert must be a router expert name or a list of them"),
])
def test_router_expert_mapping_is_validated(tmp_path, tiny_experts, plays, message) -> None:
    TableRouter.from_table({"law": "Phi-3-mini"}, experts=list(OWN_NAMES.values())).save(tmp_path / "r")
    with pytest.raises(ConfigError) as caught:
        load_config(own_config(tmp_path / "r", tiny_experts, plays))
    assert message in str(caught.value)
    assert load_config(own_config(tmp_path / "r", tiny_experts, OWN_NAMES)).router_expert == {
        "Llama-3.1-8B": "alpha", "Phi-3-mini": "beta"}
    both = load_config(own_config(tmp_path / "r", tiny_experts, {"alpha": list(OWN_NAMES.values())}))
    assert both.router_expert == {"Llama-3.1-8B": "alpha", "Phi-3-mini": "alpha"}


def test_bad_mapping_stops_lm_eval_before_loading(workspace) -> None:
    bad = yaml.safe_load((workspace / "coe.yaml").read_text())
    bad["experts"]["alpha"]["router_expert"] = "alpah"
    bad["experts"]["beta"]["router_expert"] = "beta"
    assert "'alpah' (did you mean 'alpha'?)" in lm_eval_refuses(workspace, bad, "bad_map.yaml")


# -- inspect and hub routers ----------------------------------------------------------------
def test_inspect_a_folder_a_shipped_name_and_a_pinned_hub_id(workspace, hub_cache) -> None:
    env = hub_env(workspace, hub_cache)
    folder = inspect_json(str(workspace / "router"), workspace, env)
    assert folder["experts"] == ["alpha", "beta"] and folder["sha256"] == folder_checksum(workspace / "router")
    shipped = inspect_json("mmlu_pro_subject", workspace, env)
    assert shipped["kind"] == "subject" and len(shipped["subjects"]) == 14
    assert shipped["evaluation"]["documents"] > 0 and shipped["data"]["documents"] > 0
    assert shipped["split"]["test"] == shipped["evaluation"]["documents"] and "routes" in shipped["guard"]
    assert shipped["table"]["biology"] in shipped["experts"]
    main = inspect_json("org/toy-router", workspace, env)
    assert main["experts"] == ["x", "y"] and Path(main["path"]).name == COMMIT_B
    pinned = inspect_json(f"org/toy-router@{COMMIT_A}", workspace, env)
    assert pinned["experts"] == list(OWN_NAMES.values()) and Path(pinned["path"]).name == COMMIT_A
    text = run_cli(["benchcoe", "inspect", "mmlu_pro_subject"], cwd=workspace, env=env).stdout
    assert "held-out 3610 documents" in text and "router_expert: NAME" in text and "split    seed 0" in text
    assert "  biology              -> " in text
    query = run_cli(["benchcoe", "inspect", "mmmu_pro_query"], cwd=workspace, env=env).stdout
    assert "query    head pairwise, low margin -> best, blend " in query
    assert "guard    cross-fitted choice of blend / margin, 5-fold cross-validation" in query
    assert inspect_json("mmmu_pro_query", workspace, env)["guard"]["routes"] is True


def test_a_hub_router_missing_offline_is_one_clear_line(workspace, hub_cache) -> None:
    result = run_cli(["benchcoe", "inspect", "org/absent"], cwd=workspace, env=hub_env(workspace, hub_cache),
                     check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'org/absent' is not in the local hub cache" in result.stderr


# -- push (the network upload alone is mocked: no hub can be reached here) -------------------
@pytest.fixture
def uploads(monkeypatch) -> list[dict]:
    from huggingface_hub import HfApi

    captured: list[dict] = []

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message=None, **_):
        folder = Path(folder_path)
        captured.append({"repo_id": repo_id, "revision": revision,
                         "files": {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}})
        return "c0ffee"

    def repo_info(self, repo_id, *, revision=None, **_):
        if revision not in (None, "main"):
            import httpx
            from huggingface_hub.errors import RevisionNotFoundError

            response = httpx.Response(404, request=httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}"))
            raise RevisionNotFoundError(f"no branch {revision}", response=response)

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **_: repo_id)
    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    monkeypatch.setattr(HfApi, "create_branch", lambda self, repo_id, *, branch, **_: captured.append({"branch": branch}))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return captured


def test_push_uploads_the_router_and_a_card_from_its_report(uploads, capsys) -> None:
    assert cli.main(["push", str(SHIPPED), "me/mmlu-pro-router"]) == 0
    (upload,) = uploads
    files = upload["files"]
    originals = {str(p.relative_to(SHIPPED)): p.read_bytes() for p in SHIPPED.rglob("*") if p.is_file()}
    assert {k: v for k, v in files.items() if k != "README.md"} == originals
    card = files["README.md"].decode()
    report = json.loads((SHIPPED / "report" / "evaluation.json").read_text())
    assert f"**{report['accuracy']:.4f}**" in card
    assert f"Held-out documents: {report['documents']}" in card
    assert "router: me/mmlu-pro-router" in card and "    router_expert: Phi-3-mini-4k-instruct" in card
    assert folder_checksum(SHIPPED) in card and "me/mmlu-pro-router" in capsys.readouterr().out


def test_push_of_a_router_without_a_report_says_so(uploads, tmp_path) -> None:
    TableRouter.from_table({"law": "b"}, experts=["a", "b"]).save(tmp_path / "r")
    assert cli.main(["push", str(tmp_path / "r"), "me/r", "--revision", "dev"]) == 0
    assert uploads[0] == {"branch": "dev"}, "upload_folder does not create a branch: push creates it first"
    card = uploads[1]["files"]["README.md"].decode()
    assert uploads[1]["revision"] == "dev" and "No held-out evaluation is recorded" in card
    assert cli.main(["push", str(tmp_path / "r"), "not a repo"]) == 2


def test_push_refuses_a_router_that_does_not_load_before_uploading(uploads, tmp_path, capsys) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(SHIPPED, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"garbage")
    assert cli.main(["push", str(broken), "me/broken"]) == 2
    assert not uploads and "could not load" in capsys.readouterr().err


def test_push_without_the_hub_is_one_line(tmp_path) -> None:
    """The real HfApi, offline (HF_HUB_OFFLINE=1): no traceback, exit 2."""
    result = run_cli(["benchcoe", "push", str(SHIPPED), "me/x"], cwd=tmp_path, check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "could not push to me/x" in lines[0], result.stderr


# -- reproducible record and rerun ----------------------------------------------------------
def test_results_record_versions_router_copy_and_expert_revisions(runs, tiny_experts) -> None:
    results_file = next(runs["coe"].rglob("results_*.json"))
    assert results_file.parent.name == "toy-coe", "the output folder is named after the config's name"
    record = read_results(runs["coe"])["config"]["coe"]["reproducibility"]
    import lm_eval
    import transformers

    assert record["harness"] == "lm_eval" and record["versions"]["lm_eval"] == lm_eval.__version__
    assert record["versions"]["transformers"] == transformers.__version__ and record["versions"]["torch"]
    copy = results_file.parent / record["router"]["copy"]
    assert folder_checksum(copy) == record["router"]["sha256"] == folder_checksum(runs["coe"].parent / "router")
    assert record["router"]["manifest"]["experts"] == ["alpha", "beta"]
    for name, path in tiny_experts.items():
        assert record["experts"][name]["revision"] == "sha256:" + local_weights_hash(path)
    templates = {name: record["experts"][name]["chat_template_sha256"] for name in tiny_experts}
    assert all(templates.values()) and templates["alpha"] != templates["beta"]


def test_rerun_reproduces_every_answer(runs, workspace, tmp_path) -> None:
    copy = tmp_path / "someone_elses_results"
    shutil.copytree(runs["coe"], copy)  # a results folder alone, as another person would get it
    output = tmp_path / "rerun"
    result = run_cli(["benchcoe", "rerun", str(copy), "--output", str(output)], cwd=tmp_path,
                     env=workspace_env(workspace))
    assert "benchcoe rerun: recorded with benchcoe" in result.stdout and "benchcoe rerun: warning" not in result.stderr
    original, again = read_samples(runs["coe"]), read_samples(output)
    assert set(again) == set(original) and len(original) > 0
    for key, row in original.items():
        assert again[key]["resps"] == row["resps"] and again[key]["filtered_resps"] == row["filtered_resps"], key
    coe = read_results(output)["config"]["coe"]
    assert coe["config"]["result_cache"] is False and sum(coe["expert_loads"].values()) == 2, "the experts ran"
    assert coe["reproducibility"]["router"]["sha256"] == read_results(runs["coe"])["config"]["coe"]["reproducibility"]["router"]["sha256"]


def test_rerun_finds_the_router_copy_anywhere_in_the_results_and_takes_a_relative_folder(runs, tmp_path,
                                                                                         monkeypatch) -> None:
    """Runs before stop 26 wrote the copy beside the routing log, which ``routing_log:`` puts elsewhere."""
    results = tmp_path / "results"
    shutil.copytree(runs["coe"], results)
    folder = next(results.rglob("results_*.json")).parent
    copy = next(folder.glob("router_*"))
    (folder / "logs").mkdir()
    copy.rename(folder / "logs" / copy.name)
    monkeypatch.chdir(folder)
    assert cli.main(["rerun", ".", "--dry-run"]) == 0
    rebuilt = yaml.safe_load((folder.parent / f"{folder.name}_rerun" / "coe.yaml").read_text())
    assert rebuilt["router"] == str((folder / "logs" / copy.name).resolve())


def test_rerun_of_a_folder_without_a_record_is_one_clear_line(tmp_path) -> None:
    (tmp_path / "results_x.json").write_text(json.dumps({"config": {"model": "hf"}}))
    assert cli.main(["rerun", str(tmp_path)]) == 2


@pytest.mark.parametrize("edit, words", [
    (lambda coe: coe["reproducibility"].pop("versions"), "has no package versions"),
    (lambda coe: coe["reproducibility"].update(command="lm_eval --model coe"), "no command as a list of words"),
    (lambda coe: coe["reproducibility"]["router"].pop("sha256"), "has no router checksum"),
    (lambda coe: coe.update(experts={"a": "hf"}), "no experts with their model_args"),
])
def test_rerun_of_an_edited_record_is_one_clear_line(runs, tmp_path, capsys, edit, words) -> None:
    """A results JSON cut short or edited by hand: one line naming what is missing, not a traceback."""
    folder = tmp_path / "copy"
    shutil.copytree(runs["coe"], folder)
    path = next(folder.rglob("results_*.json"))
    results = json.loads(path.read_text())
    edit(results["config"]["coe"])
    path.write_text(json.dumps(results))
    assert cli.main(["rerun", str(folder), "--dry-run"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and words in error[0] and str(path) in error[0], error


def test_local_weights_hash_follows_content(tmp_path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"weights-1")
    first = local_weights_hash(tmp_path / "one")
    assert first == local_weights_hash(tmp_path / "two"), "same content, same hash"
    (tmp_path / "two" / "model.safetensors").write_bytes(b"weights-2")  # same size, other bytes
    assert local_weights_hash(tmp_path / "two") != first


def test_rerun_drops_the_harness_answer_cache(tmp_path) -> None:
    """A rerun that kept --use_cache would replay the recorded answers instead of running the experts."""
    from benchcoe_plugins.core.rerun_cli import rerun_command

    record = {"harness": "lm_eval", "command": ["lm_eval", "--model", "coe", "--model_args", "config=old.yaml",
                                                "--use_cache", "cache/c", "--tasks", "toy", "--use_cache=x/y",
                                                "--output_path", "out"]}
    command = rerun_command(record, tmp_path / "coe.yaml", tmp_path / "out")
    assert "--use_cache" not in " ".join(command) and "cache/c" not in command
    assert command[command.index("--tasks") + 1] == "toy"
    assert command[command.index("--model_args") + 1] == f"config={tmp_path / 'coe.yaml'}"
    kept = rerun_command(record, tmp_path / "coe.yaml", tmp_path / "out", keep_caches=True)
    assert kept.count("--use_cache") == 1 and "cache/c" in kept
    # lm-eval's --model_args takes several key=value words, and its short flags are -a / -o / -c
    short = {"harness": "lm_eval", "command": ["lm_eval", "run", "--model", "coe", "-a", "config=c.yaml",
                                               "router=r_live", "-c", "/their/cache", "-o", "old", "--limit", "3"]}
    command = rerun_command(short, tmp_path / "coe.yaml", tmp_path / "out")
    assert command[3:] == ["run", "--model", "coe", "--model_args", f"config={tmp_path / 'coe.yaml'}",
                           "--output_path", str(tmp_path / "out"), "--limit", "3"]


def recorded_coe(root: Path, model_args: list[str], file_cache: str | None) -> dict:
    """A CoE record whose run started in ``root/start`` with ``config=../conf/coe.yaml`` and ``model_args``."""
    router = root / "results" / "router_copy"
    TableRouter.from_table({"biology": "alpha"}, experts=["alpha"]).save(router)
    config = {"router": "router", "experts": {"alpha": {"model": "hf", "model_args": {"pretrained": "m"}}},
              "result_cache": file_cache or "from_command_line"}
    return {"config_file": str(root / "conf" / "coe.yaml"), "config": config,
            "experts": {"alpha": {"model_args": {"pretrained": "m"}}},
            "reproducibility": {"harness": "lm_eval", "cwd": str(root / "start"),
                                "command": ["lm_eval", "--model", "coe", *model_args, "--tasks", "toy"],
                                "router": {"copy": router.name, "sha256": folder_checksum(router)}}}


@pytest.mark.parametrize("model_args", [
    ["--model_args", "config=../conf/coe.yaml,result_cache=from_command_line"],  # lmms-eval's one string
    ["-a", "config=../conf/coe.yaml", "result_cache=from_command_line"],  # lm-eval's several words
    ["--model_args={\"config\": \"../conf/coe.yaml\", \"result_cache\": \"from_command_line\"}"],  # lm-eval's JSON
])
def test_rerun_reads_a_command_line_result_cache_from_the_run_s_working_folder(tmp_path, model_args) -> None:
    """load_config reads a relative --model_args path from the working folder, not the config's folder."""
    from benchcoe_plugins.core.rerun_cli import rebuilt_config

    coe = recorded_coe(tmp_path, model_args, file_cache=None)
    rebuilt = rebuilt_config(tmp_path / "results" / "results_x.json", coe, use_result_cache=True)
    assert rebuilt["result_cache"] == str(tmp_path / "start" / "from_command_line")


def test_rerun_reads_a_config_file_result_cache_from_the_config_s_folder(tmp_path) -> None:
    from benchcoe_plugins.core.rerun_cli import rebuilt_config

    coe = recorded_coe(tmp_path, ["--model_args", "config=../conf/coe.yaml"], file_cache="in_file")
    rebuilt = rebuilt_config(tmp_path / "results" / "results_x.json", coe, use_result_cache=True)
    assert rebuilt["result_cache"] == str(tmp_path / "conf" / "in_file")
    assert rebuilt_config(tmp_path / "results" / "results_x.json", coe, use_result_cache=False)["result_cache"] is False
