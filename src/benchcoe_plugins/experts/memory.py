"""Memory snapshots of the expert pool, for benchmarks (``BENCHCOE_RECORD_MEMORY=1``).

With the variable set, the pool records a snapshot before its first expert loads and one
after each expert is freed; the record goes to the results JSON (``config.coe.memory``).
A harness run in a subprocess cannot be probed from outside without ``nvidia-smi``, so the
process records itself. CUDA figures are ``None`` where CUDA was never initialised.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

RECORD_ENV = "BENCHCOE_RECORD_MEMORY"
MB = 2 ** 20


def recording_memory() -> bool:
    return os.environ.get(RECORD_ENV, "0") not in ("0", "", "false", "False")


def current_rss_mb() -> float | None:
    """Resident set size now (Linux ``/proc``); None elsewhere."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


def memory_snapshot(event: str, expert: str | None = None) -> dict[str, Any]:
    """CUDA allocated / reserved / peak-allocated-so-far and CPU RSS now / peak, in MB."""
    torch = sys.modules.get("torch")
    cuda = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    return {
        "event": event,
        "expert": expert,
        "cuda_allocated_mb": torch.cuda.memory_allocated() / MB if cuda else None,
        "cuda_reserved_mb": torch.cuda.memory_reserved() / MB if cuda else None,
        "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / MB if cuda else None,
        "rss_mb": current_rss_mb(),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }
