"""Write one folder of the Hugging Face datasets cache the way ``load_dataset`` reloads it offline.

With ``HF_DATASETS_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) ``datasets.load_dataset(hub_id, config)``
reloads the newest folder ``$HF_DATASETS_CACHE/<org>___<name>/<config>/0.0.0/<hash>/``:
``dataset_info.json`` + ``<name>-<split>.arrow``. Folders written here carry ``MARKER``, so a
later seed replaces only its own older copies and never a real download.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from benchcoe_plugins.core.errors import BenchCoEError

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
    """Whether ``folder`` is a seeded folder with the Arrow file of every split."""
    return (folder / MARKER).is_file() and all((folder / f"{name}-{split}.arrow").is_file() for split in splits)


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
        if sibling != target and sibling.is_dir() and (sibling / MARKER).is_file():
            shutil.rmtree(sibling, ignore_errors=True)
    return target
