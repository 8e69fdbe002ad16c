"""Routers on the Hugging Face Hub: ``router: org/name[@revision]`` and ``benchcoe push``.

Downloads go through ``huggingface_hub.snapshot_download``, so the local hub cache is used
and HF_HUB_OFFLINE is honoured (offline, only a cached snapshot is read).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from benchcoe_plugins.core.errors import ConfigError
from benchcoe_plugins.routers.base import MANIFEST_NAME, folder_checksum
from benchcoe_plugins.training.reports import evaluation_markdown

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
MODEL_CARD = "README.md"


def looks_like_hub_id(value: str) -> bool:
    return bool(HUB_ID.match(value)) and not value.startswith((".", "~", "/"))


def split_revision(value: str) -> tuple[str, str | None]:
    repo_id, _, revision = value.partition("@")
    return repo_id, revision or None


def snapshot_router(value: str) -> Path:
    """The local snapshot folder of hub router ``org/name[@revision]``; downloads it when online."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    repo_id, revision = split_revision(value)
    try:
        folder = Path(snapshot_download(repo_id, revision=revision))
    except LocalEntryNotFoundError:
        raise ConfigError(
            f"router: hub router {value!r} is not in the local hub cache and the hub cannot be reached "
            f"(HF_HUB_OFFLINE or no network), and no such folder exists. Download it once online, or fix the folder path."
        ) from None
    except (RepositoryNotFoundError, HfHubHTTPError, ValueError) as error:
        raise ConfigError(f"router: could not fetch hub router {value!r} ({type(error).__name__}: "
                          f"{str(error).splitlines()[0]}). Check the id and revision.") from None
    if not (folder / MANIFEST_NAME).is_file():
        raise ConfigError(f"router: hub repository {value!r} has no {MANIFEST_NAME}; it is not a benchcoe router.")
    return folder


def held_out_report(folder: Path, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The router's evaluation report (``report/evaluation.json``), else the manifest's summary of it."""
    report = folder / "report" / "evaluation.json"
    if report.is_file():
        try:
            return json.loads(report.read_text())
        except (ValueError, RecursionError):
            print(f"benchcoe: warning: {report} is corrupt; the model card uses the manifest's evaluation",
                  file=sys.stderr)
    evaluation = manifest.get("evaluation")
    return evaluation if isinstance(evaluation, dict) else None


def model_card(manifest: Mapping[str, Any], evaluation: Mapping[str, Any] | None, repo_id: str, checksum: str) -> str:
    """A hub model card from the router's manifest and its held-out evaluation report."""
    name = manifest.get("name") or repo_id.split("/")[-1]
    data = manifest.get("data") or {}
    lines = ["---", "library_name: benchcoe-plugins", "tags:", "- benchcoe", "- router", "- collaboration-of-experts",
             "---", "", f"# {name}", "",
             f"A Bench-CoE router (kind `{manifest.get('kind')}`) for "
             f"[benchcoe-plugins](https://pypi.org/project/benchcoe-plugins/).", "",
             "## Experts", ""]
    lines += [f"- `{expert}`" for expert in manifest.get("experts", [])]
    lines += ["", "Use it with your own experts: each says which router expert it plays.", "", "```yaml",
              f"router: {repo_id}", "experts:"]
    for expert in manifest.get("experts", []):
        lines += [f"  my_{re.sub(r'[^A-Za-z0-9]+', '_', expert).lower()}:",
                  "    model: hf", "    model_args: {pretrained: /path/to/your/model}", f"    router_expert: {expert}"]
    lines += ["```", "", "## Training data", ""]
    if data:
        lines += [f"- {key}: {value}" for key, value in data.items() if key in ("source", "documents", "tasks")]
    else:
        lines.append("Not recorded in the manifest.")
    lines += [""]
    if evaluation and {"baselines", "per_subject", "routing_distribution"} <= set(evaluation):
        lines.append(evaluation_markdown(name, evaluation).replace("# Router evaluation", "## Evaluation", 1))
    elif evaluation and "accuracy" in evaluation:
        lines += ["## Evaluation", "", f"Held-out documents: {evaluation.get('documents')}; router accuracy "
                  f"{evaluation['accuracy']}.", ""]
    else:
        lines += ["## Evaluation", "", "No held-out evaluation is recorded in the manifest.", ""]
    lines += [f"Folder checksum (sha256 over files, before this card): `{checksum}`", ""]
    return "\n".join(lines)


def push_router(folder: Path, repo_id: str, revision: str | None = None, private: bool = False) -> dict[str, Any]:
    """Upload a router folder with a generated model card; returns what was uploaded. The folder must
    load as a router first; ``revision`` names a branch, created when the repository lacks it."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RevisionNotFoundError

    from benchcoe_plugins.routers.registry import load_router, read_manifest

    manifest = read_manifest(folder)
    load_router(folder)  # a folder that would not route is refused before anything is uploaded
    checksum = folder_checksum(folder)
    with tempfile.TemporaryDirectory(prefix="benchcoe-push-") as staging:
        staged = Path(staging) / "router"
        shutil.copytree(folder, staged)
        (staged / MODEL_CARD).write_text(model_card(manifest, held_out_report(folder, manifest), repo_id, checksum))
        api = HfApi()
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision:
                try:
                    api.repo_info(repo_id, revision=revision)
                except RevisionNotFoundError:  # upload_folder does not create a branch
                    api.create_branch(repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, folder_path=str(staged), revision=revision,
                                       commit_message=f"benchcoe router {manifest.get('name', folder.name)}")
        except (HfHubHTTPError, OfflineModeIsEnabled, OSError, ValueError) as error:
            raise ConfigError(f"could not push to {repo_id}: {' '.join(str(error).split())} (log in with "
                              f"'hf auth login' and check the repository id and network).") from None
        files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    return {"repo_id": repo_id, "files": files, "checksum": checksum, "commit": str(getattr(commit, "oid", commit))}
