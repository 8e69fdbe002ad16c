"""Seed the Hugging Face datasets cache so the STOCK task names run with no network.

``lm_eval --tasks mmlu_pro`` (and ``mmlu_pro_<subject>``, ``leaderboard_mmlu_pro``) call
``datasets.load_dataset("TIGER-Lab/MMLU-Pro")``. With ``HF_DATASETS_OFFLINE=1`` (or
``HF_HUB_OFFLINE=1``) ``datasets`` then reloads the most recent cached copy from
``$HF_DATASETS_CACHE/TIGER-Lab___mmlu-pro/default/0.0.0/<hash>/``. This module writes that
folder (``dataset_info.json`` + one Arrow stream file per split) from the shipped parquet
copy in ``tasks/mmlu_pro/``, so the stock task YAMLs load it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from benchcoe_plugins.core.errors import BenchCoEError

HUB_ID = "TIGER-Lab/MMLU-Pro"
CACHE_DIR_NAME = "TIGER-Lab___mmlu-pro"
FILE_PREFIX = "mmlu-pro"
CONFIG_NAME = "default"
VERSION = "0.0.0"
SPLITS = ("test", "validation")
MARKER = "benchcoe_seed.json"


class OfflineDataError(BenchCoEError, RuntimeError):
    """The shipped offline copy is missing or the cache cannot be written."""


def shipped_mmlu_pro() -> Path:
    """The shipped ``tasks/mmlu_pro`` folder holding ``test.parquet`` and ``validation.parquet``."""
    from benchcoe_plugins.resources import resource_dir

    try:
        folder = resource_dir("tasks") / "mmlu_pro"
    except FileNotFoundError as error:
        raise OfflineDataError(f"{error}. Reinstall benchcoe-plugins.") from None
    missing = [s for s in SPLITS if not (folder / f"{s}.parquet").is_file()]
    if missing:
        raise OfflineDataError(f"{folder} lacks {[f'{s}.parquet' for s in missing]}; rebuild it with "
                               f"'python tasks/mmlu_pro/build.py' in a checkout, or reinstall the package.")
    return folder


def datasets_cache_dir() -> Path:
    """Where ``datasets`` looks: ``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``."""
    import datasets.config

    return Path(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE)))


def _content_hash(source: Path) -> str:
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update((source / f"{split}.parquet").read_bytes())
    return digest.hexdigest()[:40]


def seeded_folder(cache_dir: Path | None = None, source: Path | None = None) -> Path:
    source = source or shipped_mmlu_pro()
    cache_dir = Path(cache_dir) if cache_dir else datasets_cache_dir()
    return cache_dir / CACHE_DIR_NAME / CONFIG_NAME / VERSION / _content_hash(source)


def is_seeded(cache_dir: Path | None = None, source: Path | None = None) -> bool:
    folder = seeded_folder(cache_dir, source)
    return (folder / MARKER).is_file() and all((folder / f"{FILE_PREFIX}-{s}.arrow").is_file() for s in SPLITS)


def _write_split(parquet: Path, arrow: Path, features) -> tuple[int, int]:
    import pyarrow.parquet as pq
    from datasets.arrow_writer import ArrowWriter

    table = pq.read_table(parquet).cast(features.arrow_schema)
    with ArrowWriter(path=str(arrow), features=features) as writer:
        writer.write_table(table)
        num_examples, num_bytes = writer.finalize()
    return num_examples, num_bytes


def seed_mmlu_pro_cache(cache_dir: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                        force: bool = False) -> Path:
    """Write the datasets-cache folder of TIGER-Lab/MMLU-Pro from the shipped parquet; returns it.

    Idempotent: a folder already seeded from the same parquet files is kept. Folders an older
    seed of this package wrote (other content hash) are removed; a real download is left alone.
    """
    import datasets

    source = Path(source) if source else shipped_mmlu_pro()
    target = seeded_folder(Path(cache_dir) if cache_dir else None, source)
    if is_seeded(target.parents[3], source) and not force:
        return target
    features = datasets.Features({
        "question_id": datasets.Value("int64"),
        "question": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "answer": datasets.Value("string"),
        "answer_index": datasets.Value("int64"),
        "cot_content": datasets.Value("string"),
        "category": datasets.Value("string"),
        "src": datasets.Value("string"),
    })
    version_dir = target.parent
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".benchcoe-", dir=version_dir))
    except OSError as error:
        raise OfflineDataError(f"cannot write the datasets cache at {version_dir} ({error}). Set HF_HOME or "
                               f"HF_DATASETS_CACHE to a writable folder, or pass --cache-dir.") from None
    try:
        splits = datasets.SplitDict(dataset_name=FILE_PREFIX)
        for split in SPLITS:
            rows, size = _write_split(source / f"{split}.parquet", staging / f"{FILE_PREFIX}-{split}.arrow", features)
            splits.add(datasets.SplitInfo(name=split, num_bytes=size, num_examples=rows, dataset_name=FILE_PREFIX))
        info = datasets.DatasetInfo(
            description="MMLU-Pro (TIGER-AI-Lab, Apache-2.0), offline copy seeded by benchcoe-plugins",
            license="apache-2.0", features=features, builder_name=FILE_PREFIX, dataset_name=FILE_PREFIX,
            config_name=CONFIG_NAME, version=VERSION, splits=splits,
        )
        info.write_to_directory(str(staging))
        (staging / MARKER).write_text(json.dumps({
            "hub_id": HUB_ID, "source": str(source), "rows": {s: splits[s].num_examples for s in SPLITS},
            "written_by": "benchcoe_plugins.offline.seed",
        }, indent=1) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for sibling in version_dir.iterdir():
        if sibling != target and sibling.is_dir() and (sibling / MARKER).is_file():
            shutil.rmtree(sibling, ignore_errors=True)
    return target


def seed_all(cache_dir: str | os.PathLike | None = None, force: bool = False) -> dict[str, Path]:
    """Every offline dataset this package ships, seeded; name -> cache folder."""
    return {HUB_ID: seed_mmlu_pro_cache(cache_dir, force=force)}
