"""Seed the Hugging Face datasets cache so the STOCK task names run with no network.

``lm_eval --tasks mmlu_pro`` (and ``mmlu_pro_<subject>``, ``leaderboard_mmlu_pro``) call
``datasets.load_dataset("TIGER-Lab/MMLU-Pro")``. With ``HF_DATASETS_OFFLINE=1`` (or
``HF_HUB_OFFLINE=1``) ``datasets`` then reloads the most recent cached copy from
``$HF_DATASETS_CACHE/TIGER-Lab___mmlu-pro/default/0.0.0/<hash>/``. This module writes that
folder (``dataset_info.json`` + one Arrow stream file per split) from the shipped parquet
copy in ``tasks/mmlu_pro/``, so the stock task YAMLs load it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchcoe_plugins.offline.cache import (OfflineDataError, cache_folder, content_hash, is_loaded_seed,
                                            seed_cache_folder, write_cache_folder)

HUB_ID = "TIGER-Lab/MMLU-Pro"
CACHE_DIR_NAME = "TIGER-Lab___mmlu-pro"
FILE_PREFIX = "mmlu-pro"
CONFIG_NAME = "default"
SPLITS = ("test", "validation")


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


def seeded_folder(cache_dir: Path | None = None, source: Path | None = None) -> Path:
    source = source or shipped_mmlu_pro()
    return cache_folder(cache_dir, CACHE_DIR_NAME, CONFIG_NAME, content_hash(source / f"{s}.parquet" for s in SPLITS))


def is_seeded(cache_dir: Path | None = None, source: Path | None = None) -> bool:
    """Whether offline loads read the seeded copy and it reads back whole."""
    return is_loaded_seed(seeded_folder(cache_dir, source), FILE_PREFIX, SPLITS)


def seed_mmlu_pro_cache(cache_dir: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                        force: bool = False) -> Path:
    """Write the datasets-cache folder of TIGER-Lab/MMLU-Pro from the shipped parquet; returns the folder
    offline loads read afterwards (see ``cache.seed_cache_folder``).

    Idempotent: a folder already seeded from the same parquet files is kept. Folders an older
    seed of this package wrote (other content hash) are removed; a real download is left alone,
    and stays the one offline loads read unless ``force``.
    """
    source = Path(source) if source else shipped_mmlu_pro()
    target = seeded_folder(Path(cache_dir) if cache_dir else None, source)
    return seed_cache_folder(target, FILE_PREFIX, SPLITS, force, lambda: _write(target, source))


def _write(target: Path, source: Path) -> Path:
    import datasets
    import pyarrow.parquet as pq

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
    tables = {split: pq.read_table(source / f"{split}.parquet").cast(features.arrow_schema) for split in SPLITS}
    marker = {"hub_id": HUB_ID, "source": str(source), "written_by": "benchcoe_plugins.offline.seed"}
    return write_cache_folder(target, FILE_PREFIX, CONFIG_NAME, features, tables, marker, license="apache-2.0",
                              description="MMLU-Pro (TIGER-AI-Lab, Apache-2.0), offline copy seeded by benchcoe-plugins")


def seed_all(cache_dir: str | os.PathLike | None = None, force: bool = False) -> dict[str, Path]:
    """Every offline dataset this package ships, seeded; name -> cache folder."""
    from benchcoe_plugins.offline import mmmu_pro

    return {HUB_ID: seed_mmlu_pro_cache(cache_dir, force=force),
            f"{mmmu_pro.HUB_ID} ({mmmu_pro.CONFIG_NAME})": mmmu_pro.seed_mmmu_pro_cache(cache_dir, force=force)}
