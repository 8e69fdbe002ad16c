"""Small offline copies of lmms-eval's MMMU, MMStar and ScienceQA, in each dataset's real schema.

With ``HF_DATASETS_OFFLINE=1`` ``datasets.load_dataset(hub_id, config)`` reloads the newest
folder ``$HF_DATASETS_CACHE/<org>___<snake_name>/<config>/0.0.0/<hash>/`` (dataset_info.json
+ ``<snake_name>-<split>.arrow``). ``seed_lmms_datasets`` writes such folders, so the STOCK
tasks ``mmmu_val``, ``mmstar``, ``scienceqa_img`` and ``scienceqa_full`` run unchanged and
without network. The rows are synthetic (generated images, templated questions): for
testing the plumbing, not for measuring models. They are written only to a cache folder named
for them, never to the user's own cache, where they would hide a real download in offline mode:

    python -m benchcoe_plugins.offline.lmms_datasets /tmp/hf/datasets   # then HF_DATASETS_CACHE=/tmp/hf/datasets
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchcoe_plugins.offline.cache import VERSION, write_cache_folder

MMMU_SUBJECTS = ["Art", "Biology", "Computer_Science", "Math", "Physics", "History"]
MMSTAR_CATEGORIES = [("coarse perception", "image scene and topic"), ("fine-grained perception", "object counting"),
                     ("instance reasoning", "single-instance reasoning"), ("logical reasoning", "diagram reasoning"),
                     ("science & technology", "natural science"), ("math", "geometry")]
SQA_SUBJECTS = [("natural science", "physics"), ("social science", "geography"), ("language science", "grammar")]
COLORS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 200, 30), (150, 60, 200), (30, 200, 200)]


def image(rng: random.Random, size: tuple[int, int] = (64, 48)):
    """A generated picture: a coloured background with a rectangle and an ellipse."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", size, rng.choice(COLORS))
    draw = ImageDraw.Draw(picture)
    w, h = size
    draw.rectangle([rng.randrange(w // 2), rng.randrange(h // 2), w // 2 + rng.randrange(w // 2), h - 1],
                   fill=rng.choice(COLORS))
    draw.ellipse([rng.randrange(w // 3), rng.randrange(h // 3), w - rng.randrange(w // 3) - 1,
                  h - rng.randrange(h // 3) - 1], outline=rng.choice(COLORS), width=2)
    return picture


def _options(rng: random.Random, n: int = 4) -> list[str]:
    return [f"{rng.randint(1, 99)} {rng.choice(['cells', 'metres', 'volts', 'years', 'apples'])}" for _ in range(n)]


def mmmu_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """lmms-lab MMMU columns; ``id`` is ``validation_<Subject>_<k>`` (the subject the router reads)."""
    rows = []
    for i in range(n):
        subject = MMMU_SUBJECTS[i % len(MMMU_SUBJECTS)]
        options = _options(rng)
        multiple_choice = i % 5 != 4
        row = {
            "id": f"validation_{subject}_{i // len(MMMU_SUBJECTS) + 1}",
            "question": f"Look at <image 1>. Which value does the {subject.replace('_', ' ').lower()} figure {i} show?",
            "options": str(options if multiple_choice else []),
            "explanation": "",
            "img_type": "['Diagrams']",
            "answer": "ABCD"[i % 4] if multiple_choice else options[0],
            "topic_difficulty": ["Easy", "Medium", "Hard"][i % 3],
            "question_type": "multiple-choice" if multiple_choice else "open",
            "subfield": subject.replace("_", " "),
        }
        for k in range(1, 8):
            row[f"image_{k}"] = image(rng) if k == 1 else None
        rows.append(row)
    return rows


def mmstar_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        category, l2 = MMSTAR_CATEGORIES[i % len(MMSTAR_CATEGORIES)]
        options = _options(rng)
        question = (f"Question {i}: what does the picture show about {l2}?\nOptions: "
                    + ", ".join(f"{letter}: {text}" for letter, text in zip("ABCD", options)))
        rows.append({"index": i, "question": question, "image": image(rng), "answer": "ABCD"[i % 4],
                     "category": category, "l2_category": l2,
                     "meta_info": {"source": "benchcoe-synthetic", "split": "val", "image_path": f"images/{i}.png"}})
    return rows


def scienceqa_rows(n: int, rng: random.Random, with_images_only: bool) -> list[dict[str, Any]]:
    """ScienceQA columns; in the FULL config every third question has no image (and often a hint)."""
    rows = []
    for i in range(n):
        subject, topic = SQA_SUBJECTS[i % len(SQA_SUBJECTS)]
        has_image = with_images_only or i % 3 != 2
        choices = _options(rng, 2 + i % 3)
        rows.append({
            "image": image(rng) if has_image else None,
            "question": f"Which answer fits {topic} question {i}?",
            "choices": choices,
            "answer": i % len(choices),
            "hint": "" if has_image else f"Read the passage about {topic} before answering.",
            "task": "closed choice", "grade": f"grade{3 + i % 6}", "subject": subject, "topic": topic,
            "category": f"{topic} basics", "skill": f"Identify {topic} facts", "lecture": "", "solution": "",
        })
    return rows


def _features(name: str):
    import datasets

    string, image_feature = datasets.Value("string"), datasets.Image()
    if name == "mmmu":
        columns = {"id": string, "question": string, "options": string, "explanation": string}
        columns.update({f"image_{k}": image_feature for k in range(1, 8)})
        columns.update({"img_type": string, "answer": string, "topic_difficulty": string, "question_type": string,
                        "subfield": string})
        return datasets.Features(columns)
    if name == "mmstar":
        return datasets.Features({"index": datasets.Value("int64"), "question": string, "image": image_feature,
                                  "answer": string, "category": string, "l2_category": string,
                                  "meta_info": {"source": string, "split": string, "image_path": string}})
    return datasets.Features({
        "image": image_feature, "question": string, "choices": datasets.List(string), "answer": datasets.Value("int8"),
        "hint": string, "task": string, "grade": string, "subject": string, "topic": string, "category": string,
        "skill": string, "lecture": string, "solution": string,
    })


@dataclass(frozen=True)
class OfflineDataset:
    hub_id: str
    config: str
    split: str
    schema: str
    rows: Callable[[int, random.Random], list[dict[str, Any]]]


# What each stock task loads (dataset_path, dataset_name, test_split in lmms-eval 0.7.3's YAMLs).
OFFLINE_DATASETS = {
    "mmmu_val": OfflineDataset("lmms-lab-encoder/MMMU", "default", "validation", "mmmu", mmmu_rows),
    "mmstar": OfflineDataset("Lin-Chen/MMStar", "default", "val", "mmstar", mmstar_rows),
    "scienceqa_img": OfflineDataset("lmms-lab-encoder/ScienceQA", "ScienceQA-IMG", "test", "scienceqa",
                                    lambda n, rng: scienceqa_rows(n, rng, with_images_only=True)),
    "scienceqa": OfflineDataset("lmms-lab-encoder/ScienceQA", "ScienceQA-FULL", "test", "scienceqa",
                                lambda n, rng: scienceqa_rows(n, rng, with_images_only=False)),
}


def write_cached_dataset(dataset: OfflineDataset, rows: list[dict[str, Any]], cache_dir: Path) -> Path:
    """Write one config/split into the datasets cache the way ``load_dataset`` reloads it offline."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    organisation, name = dataset.hub_id.split("/")
    snake = camelcase_to_snakecase(name)
    features = _features(dataset.schema)
    table = datasets.Dataset.from_list(rows, features=features).data.table
    digest = hashlib.sha256(json.dumps([dataset.hub_id, dataset.config, len(rows)]).encode())
    digest.update(str(table.to_pydict().get("question")).encode())
    target = cache_dir / f"{organisation}___{snake}" / dataset.config / VERSION / digest.hexdigest()[:40]
    return write_cache_folder(target, snake, dataset.config, features, {dataset.split: table},
                              {"hub_id": dataset.hub_id, "config": dataset.config, "synthetic": True},
                              description=f"synthetic offline copy of {dataset.hub_id} written by benchcoe-plugins")


def seed_lmms_datasets(cache_dir: str | os.PathLike, rows: int = 12, seed: int = 0) -> dict[str, Path]:
    """Seed every dataset of ``OFFLINE_DATASETS`` (``rows`` synthetic rows each) into the datasets cache
    folder ``cache_dir``; task -> cache folder."""
    folder = Path(cache_dir)
    written = {}
    for task, dataset in OFFLINE_DATASETS.items():
        rng = random.Random(f"{seed}:{task}")
        written[task] = write_cached_dataset(dataset, dataset.rows(rows, rng), folder)
    return written


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchcoe_plugins.offline.lmms_datasets CACHE_FOLDER (a datasets cache of its own: "
                 "the rows are synthetic)")
    for task_name, path in seed_lmms_datasets(sys.argv[1]).items():
        print(f"{task_name}: {path}")
