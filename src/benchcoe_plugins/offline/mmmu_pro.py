"""Seed lmms-eval's ``mmmu_pro_standard`` (MMMU/MMMU_Pro, "standard (10 options)", test) offline.

The shipped ``tasks/mmmu_pro/test.parquet`` holds the real 1,730 questions as text (ids,
questions, options, answers, subjects) but no images: the records they come from have none.
Seeding writes one small grey placeholder image per ``<image N>`` a question or its options
name, so the stock task's ``doc_to_visual`` finds every image column it asks for. The
placeholders carry no information; the replay experts answer from records, not from images.
"""

from __future__ import annotations

import ast
import io
import os
import re
from functools import lru_cache
from pathlib import Path

from benchcoe_plugins.offline.cache import (OfflineDataError, cache_folder, content_hash, is_loaded_seed,
                                            seed_cache_folder, write_cache_folder)

HUB_ID = "MMMU/MMMU_Pro"
CACHE_DIR_NAME = "MMMU___mmmu_pro"
FILE_PREFIX = "mmmu_pro"
CONFIG_NAME = "standard (10 options)"
SPLIT = "test"
SPLITS = (SPLIT,)
TASK = "mmmu_pro_standard"
VLM_POOL = ["InternVL2-8B", "InternVL2-40B", "InternVL2-Llama3-76B", "llava-onevision-qwen2-7b-vo-hf",
            "llava-onevision-qwen2-72b-vo-hf"]
COLUMNS = ["id", "question", "options", "explanation", "img_type", "answer", "topic_difficulty", "subject"]
IMAGE_COLUMNS = [f"image_{k}" for k in range(1, 8)]
IMAGE_TOKEN = re.compile(r"<image (\d+)>")
PLACEHOLDER_SIZE = (32, 32)


def shipped_mmmu_pro() -> Path:
    """The shipped ``tasks/mmmu_pro`` folder holding ``test.parquet`` and ``replay/``."""
    from benchcoe_plugins.resources import resource_dir

    try:
        folder = resource_dir("tasks") / "mmmu_pro"
    except FileNotFoundError as error:
        raise OfflineDataError(f"{error}. Reinstall benchcoe-plugins.") from None
    if not (folder / "test.parquet").is_file():
        raise OfflineDataError(f"{folder} lacks test.parquet; rebuild it with 'python tasks/mmmu_pro/build.py' "
                               f"in a checkout, or reinstall the package.")
    return folder


def image_numbers(question: str, options: str) -> list[int]:
    """The N of every ``<image N>`` in the question and its options (sorted, unique)."""
    return sorted({int(n) for n in IMAGE_TOKEN.findall(question + " " + options)})


@lru_cache(maxsize=None)
def placeholder_png(number: int) -> bytes:
    """A small grey PNG with a dark mark whose position tells ``<image N>`` apart (no content)."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", PLACEHOLDER_SIZE, (200, 200, 200))
    step = PLACEHOLDER_SIZE[0] // 8
    ImageDraw.Draw(picture).rectangle([step * (number - 1), 0, step * number - 1, step - 1], fill=(60, 60, 60))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def seeded_folder(cache_dir: Path | None = None, source: Path | None = None) -> Path:
    source = source or shipped_mmmu_pro()
    digest = content_hash([source / "test.parquet"], repr(PLACEHOLDER_SIZE))
    return cache_folder(cache_dir, CACHE_DIR_NAME, CONFIG_NAME, digest)


def is_seeded(cache_dir: Path | None = None, source: Path | None = None) -> bool:
    """Whether offline loads read the seeded copy and it reads back whole."""
    return is_loaded_seed(seeded_folder(cache_dir, source), FILE_PREFIX, SPLITS)


def seed_mmmu_pro_cache(cache_dir: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                        force: bool = False) -> Path:
    """Write the datasets-cache folder of MMMU/MMMU_Pro "standard (10 options)" from the shipped
    parquet, with placeholder images; returns the folder offline loads read afterwards. Idempotent,
    and leaves a real download alone, like ``seed_mmlu_pro_cache``."""
    source = Path(source) if source else shipped_mmmu_pro()
    target = seeded_folder(Path(cache_dir) if cache_dir else None, source)
    return seed_cache_folder(target, FILE_PREFIX, SPLITS, force, lambda: _write(target, source))


def _write(target: Path, source: Path) -> Path:
    import datasets
    import pyarrow.parquet as pq

    columns = pq.read_table(source / "test.parquet").to_pydict()
    rows = []
    for i in range(len(columns["id"])):
        row = {c: columns[c][i] for c in COLUMNS}
        present = set(image_numbers(row["question"], row["options"]))
        ast.literal_eval(row["options"])  # the task parses it so; a broken copy fails here, not mid-run
        for k, column in enumerate(IMAGE_COLUMNS, start=1):
            row[column] = {"bytes": placeholder_png(k), "path": None} if k in present else None
        rows.append(row)
    string = datasets.Value("string")
    features = datasets.Features({**{c: string for c in COLUMNS[:4]},
                                  **{c: datasets.Image() for c in IMAGE_COLUMNS},
                                  **{c: string for c in COLUMNS[4:]}})
    table = datasets.Dataset.from_list(rows, features=features).data.table
    marker = {"hub_id": HUB_ID, "config": CONFIG_NAME, "source": str(source), "placeholder_images": True,
              "written_by": "benchcoe_plugins.offline.mmmu_pro"}
    return write_cache_folder(target, FILE_PREFIX, CONFIG_NAME, features, {SPLIT: table}, marker, license="apache-2.0",
                              description="MMMU-Pro standard (10 options) (MMMU-Benchmark, Apache-2.0), question text "
                                          "only with placeholder images, seeded by benchcoe-plugins")
