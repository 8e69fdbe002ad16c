"""What an expert's weights are, for the result cache key: content, not names and mtimes.

A local file's SHA-256 is computed once and remembered by (path, size, mtime, inode) in a
JSON file beside the result caches, so weights replaced in place by same-size files with
the mtime kept (``cp -p``, ``rsync -a``) still change the identity: a copy gets another
inode, an in-place rewrite another ctime. A hub id is identified by the commit its
revision resolves to in the local hub cache, when that is known.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
PROGRESS_FROM_BYTES = 256 << 20  # show a bar for files that take more than a moment to hash
_memo: dict[tuple, str] = {}


def _hash_cache_file() -> Path:
    return Path(os.environ.get("BENCHCOE_CACHE", "~/.cache/benchcoe_plugins")).expanduser() / "weights_sha256.json"


def _read_hash_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stat_key(file: Path) -> tuple:
    stat = file.stat()
    return (str(file.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)


def file_sha256(file: Path, remembered: dict[str, Any]) -> str:
    key = _stat_key(file)
    if key in _memo:
        return _memo[key]
    text_key = json.dumps(key)
    digest = remembered.get(text_key)
    if not isinstance(digest, str):
        from tqdm.auto import tqdm

        sha = hashlib.sha256()
        with file.open("rb") as handle, tqdm(total=key[1], unit="B", unit_scale=True, leave=False,
                                              desc=f"benchcoe: hashing {file.name}",
                                              disable=key[1] < PROGRESS_FROM_BYTES) as progress:
            for block in iter(lambda: handle.read(CHUNK), b""):
                sha.update(block)
                progress.update(len(block))
        digest = sha.hexdigest()
        remembered[text_key] = digest
    _memo[key] = digest
    return digest


def local_weights_hash(path: str | os.PathLike) -> str:
    """SHA-256 over the relative names and contents of every file under ``path`` (a file or a folder).

    Each file's hash is remembered by (path, size, mtime, inode, ctime) in the process and in a
    JSON file beside the result caches, so weights are read once, not once per run.
    """
    path = Path(path).expanduser()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    cache_file = _hash_cache_file()
    remembered = _read_hash_cache(cache_file)
    before = len(remembered)
    digest = hashlib.sha256()
    for file in files:
        name = file.name if file == path else file.relative_to(path)
        digest.update(f"{name}:{file_sha256(file, remembered)};".encode())
    if len(remembered) != before:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(remembered))
            temporary.replace(cache_file)
        except OSError as error:
            logger.warning("benchcoe: cannot remember weight hashes in %s (%s); they are recomputed next run",
                           cache_file, error)
    return digest.hexdigest()


def local_weights_identity(value: str) -> str:
    """``<resolved path>#<content hash>``; the value itself if no such path exists."""
    path = Path(value).expanduser()
    if not path.exists():
        return value
    return f"{path.resolve()}#{local_weights_hash(path)[:32]}"


def hub_revision(repo_id: str, revision: str | None) -> str | None:
    """The commit ``revision`` (default main) of ``repo_id`` resolves to in the local hub cache."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def weights_identity(value: str, model_args: dict[str, Any]) -> dict[str, Any]:
    if Path(value).expanduser().exists():
        return {"local": local_weights_identity(value)}
    revision = model_args.get("revision")
    return {"hub": value, "revision": revision, "commit": hub_revision(value, revision if isinstance(revision, str) else None)}


def hub_commit(repo_id: str, revision: str | None = None) -> str | None:
    """The commit a hub id resolves to: asked of the hub when online, else read from the local cache."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(repo_id, revision=revision).sha
        except Exception:  # unreachable hub or private repo: fall back to the cache
            pass
    commit = hub_revision(repo_id, revision)
    if commit:
        return commit
    return revision if revision and len(revision) == 40 else None
