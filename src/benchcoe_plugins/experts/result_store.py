"""On-disk answers of one expert, so a failed run resumes without recomputing.

One SQLite file per expert identity (harness model + args + weights fingerprint) and
rank; each row maps a request key (request type + the request's arguments) to the
pickled answer. A store never serves another expert's answers: the file name is the
expert's identity.
"""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path
from typing import Any, Iterable


class ResultStore:
    def __init__(self, folder: Path, expert_identity: str, rank: int = 0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.identity = expert_identity
        self.path = self.folder / f"{expert_identity}.rank{rank}.sqlite"
        self._connection = sqlite3.connect(self.path)
        self._connection.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value BLOB)")
        self._connection.commit()

    def _sibling_paths(self) -> list[Path]:
        """Files of the same expert written by other ranks (a run with another world size)."""
        return sorted(p for p in self.folder.glob(f"{self.identity}.rank*.sqlite") if p != self.path)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        connections = [self._connection] + [sqlite3.connect(p) for p in self._sibling_paths()]
        try:
            for connection in connections:
                missing = [k for k in wanted if k not in found]
                for start in range(0, len(missing), 500):
                    chunk = missing[start:start + 500]
                    rows = connection.execute(
                        f"SELECT key, value FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk
                    ).fetchall()
                    found.update((key, pickle.loads(value)) for key, value in rows)
        finally:
            for connection in connections[1:]:
                connection.close()
        return found

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self._connection.executemany(
            "INSERT OR REPLACE INTO answers (key, value) VALUES (?, ?)",
            [(key, pickle.dumps(value)) for key, value in items],
        )
        self._connection.commit()

    def close(self) -> None:
        self._connection.close()
