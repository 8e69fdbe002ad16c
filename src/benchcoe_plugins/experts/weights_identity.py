"""What exactly an expert's weights are: a content hash of local files, the hub commit of a hub id."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HASHES: dict[tuple, str] = {}
CHUNK = 1 << 20


def _file_states(path: Path) -> tuple[tuple[str, int, int, int], ...]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    states = []
    for file in files:
        stat = file.stat()
        states.append((str(file.relative_to(path) if path.is_dir() else file.name), stat.st_size,
                       stat.st_mtime_ns, stat.st_ino))
    return tuple(states)


def local_weights_hash(path: str | os.PathLike) -> str:
    """sha256 over the relative names and bytes of every file under ``path`` (a file or folder).

    Computed once per process for a given (path, size, mtime, inode) of each file.
    """
    path = Path(path).expanduser().resolve()
    key = (str(path), _file_states(path))
    if key not in _HASHES:
        digest = hashlib.sha256()
        for name, *_ in key[1]:
            digest.update(name.encode() + b"\0")
            with (path / name if path.is_dir() else path).open("rb") as handle:
                while block := handle.read(CHUNK):
                    digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def hub_commit(repo_id: str, revision: str | None = None) -> str | None:
    """The commit a hub id resolves to: asked of the hub when online, else read from the local cache."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(repo_id, revision=revision).sha
        except Exception:  # unreachable hub or private repo: fall back to the cache
            pass
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    if ref.is_file():
        return ref.read_text().strip()
    return revision if revision and len(revision) == 40 else None
