"""Write one folder of the Hugging Face datasets cache the way ``load_dataset`` reloads it offline.

With ``HF_DATASETS_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) ``datasets.load_dataset(hub_id, config)``
reloads the newest folder ``$HF_DATASETS_CACHE/<org>___<name>/<config>/<version>/<hash>/``
(by modification time): ``dataset_info.json`` + ``<name>-<split>.arrow``. Folders written here carry
``MARKER``, so a later seed replaces only its own older copies. A copy not written here (a real
download) is never replaced, and not hidden either unless asked: being newer, a seeded folder would
be the one offline runs load. Hidden names (``.name``) are invisible to the loader, which is where
unusable folders are set aside.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from benchcoe_plugins.core.errors import BenchCoEError

logger = logging.getLogger(__name__)
MARKER = "benchcoe_seed.json"
VERSION = "0.0.0"


class OfflineDataError(BenchCoEError, RuntimeError):
    """The shipped offline copy is missing or the cache cannot be written."""


def datasets_cache_dir() -> Path:
    """Where ``datasets`` looks: ``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``."""
    import datasets.config

    return Path(os.path.expanduser(str(datasets.config.HF_DATASETS_CACHE)))


def content_hash(files: Iterable[Path], *extra: str) -> str:
    """40 hex digits of the files' bytes (and ``extra``): names a seeded folder by what it holds."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    for value in extra:
        digest.update(value.encode())
    return digest.hexdigest()[:40]


def cache_folder(cache_dir: str | os.PathLike | None, dir_name: str, config: str, digest: str) -> Path:
    """``<cache>/<dir_name>/<config>/0.0.0/<digest>``, under datasets' own cache when ``cache_dir`` is None."""
    return (Path(cache_dir) if cache_dir else datasets_cache_dir()) / dir_name / config / VERSION / digest


def is_complete(folder: Path, name: str, splits: Iterable[str]) -> bool:
    """Whether ``folder`` is a seeded folder that reads back whole: its marker and ``dataset_info.json``
    parse, and every split's Arrow file holds the rows the marker names (an interrupted copy does not)."""
    import pyarrow as pa

    try:
        rows = json.loads((folder / MARKER).read_text())["rows"]
        json.loads((folder / "dataset_info.json").read_text())
        for split in splits:
            with pa.memory_map(str(folder / f"{name}-{split}.arrow")) as source:
                if pa.ipc.open_stream(source).read_all().num_rows != int(rows[split]):
                    return False
    except (OSError, ValueError, KeyError, TypeError):  # pyarrow's ArrowInvalid is a ValueError
        return False
    return True


def visible_folders(target: Path) -> list[Path]:
    """The ``<config>/<version>/<hash>`` folders of ``target``'s dataset and config that the loader sees
    (its ``glob`` skips names starting with a dot; pathlib's does not)."""
    return [f for f in target.parents[1].glob("*/*")
            if f.is_dir() and not f.name.startswith(".") and not f.parent.name.startswith(".")]


def loaded_folder(target: Path) -> Path | None:
    """The folder an offline ``load_dataset`` of ``target``'s dataset and config reads: the newest
    visible ``<config>/<version>/<hash>`` folder holding a ``dataset_info.json``; None if there is none."""
    candidates = [f for f in visible_folders(target) if (f / "dataset_info.json").is_file()]
    return max(candidates, key=lambda f: f.stat().st_mtime) if candidates else None


def foreign_copies(target: Path) -> list[Path]:
    """Copies of ``target``'s dataset and config that this package did not write (downloads)."""
    return sorted(f for f in visible_folders(target) if f != target
                  and (f / "dataset_info.json").is_file() and not (f / MARKER).is_file())


def set_aside(folder: Path, why: str) -> Path:
    """Renames ``folder`` to a hidden name beside it, which the loader's glob skips; warns once."""
    aside = folder.with_name(f".benchcoe-unusable-{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    logger.warning("benchcoe: %s %s; set aside as %s", folder, why, aside.name)
    return aside


def is_loaded_seed(target: Path, name: str, splits: Iterable[str]) -> bool:
    """Whether offline loads read ``target`` and it reads back whole."""
    return loaded_folder(target) == target and is_complete(target, name, splits)


def seed_cache_folder(target: Path, name: str, splits: Iterable[str], force: bool, write: Callable[[], Path]) -> Path:
    """Seeds ``target`` with ``write()`` unless it is already whole; returns the folder offline loads of
    its dataset read afterwards. Visible folders without ``dataset_info.json`` beside it (a killed
    download's ``<hash>.incomplete``, on which every offline load of the dataset fails) and a damaged
    ``target`` are set aside first. A copy this package did not write is left as the one loads read,
    unless ``force``: then the seed, being newer, hides it (said once)."""
    splits = list(splits)
    for folder in visible_folders(target):
        if not (folder / "dataset_info.json").is_file():
            set_aside(folder, "holds no dataset_info.json, so every offline load of this dataset fails on it")
    whole = is_complete(target, name, splits)
    if whole and not force:
        return loaded_folder(target) or target
    others = foreign_copies(target)
    if others and not force:
        return loaded_folder(target) or others[-1]
    if target.is_dir() and not whole:
        set_aside(target, "does not read back whole (an interrupted copy?)")
    written = write()
    for other in others:
        logger.warning("benchcoe: %s (not written by benchcoe) is now hidden from offline loads by %s; delete "
                       "that folder to use it again", other, written)
    return written


def write_cache_folder(target: Path, name: str, config: str, features: Any, tables: Mapping[str, Any],
                       marker: Mapping[str, Any], description: str, license: str = "") -> Path:
    """Writes ``target`` (``.../<config>/0.0.0/<hash>``) with one Arrow file per split of ``tables``
    (split -> pyarrow table in ``features``' schema), then removes older folders of ours beside it.

    The folder is built in a staging folder and renamed into place, so a reader never sees half of it.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    version_dir = target.parent
    try:
        version_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".benchcoe-", dir=version_dir))
    except OSError as error:
        raise OfflineDataError(f"cannot write the datasets cache at {version_dir} ({error}). Set HF_HOME or "
                               f"HF_DATASETS_CACHE to a writable folder, or pass --cache-dir.") from None
    try:
        splits = datasets.SplitDict(dataset_name=name)
        for split, table in tables.items():
            with ArrowWriter(path=str(staging / f"{name}-{split}.arrow"), features=features) as writer:
                writer.write_table(table)
                num_examples, num_bytes = writer.finalize()
            splits.add(datasets.SplitInfo(name=split, num_bytes=num_bytes, num_examples=num_examples, dataset_name=name))
        datasets.DatasetInfo(description=description, license=license, features=features, builder_name=name,
                             dataset_name=name, config_name=config, version=VERSION,
                             splits=splits).write_to_directory(str(staging))
        rows = {split: splits[split].num_examples for split in tables}
        (staging / MARKER).write_text(json.dumps({**marker, "rows": rows}, indent=1) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for sibling in version_dir.iterdir():
        if (sibling != target and sibling.is_dir() and not sibling.name.startswith(".")
                and (sibling / MARKER).is_file()):
            shutil.rmtree(sibling, ignore_errors=True)
    return target
