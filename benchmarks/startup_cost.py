"""Start-up cost of the lm-eval registration line (``benchcoe_plugins.pth``).

Every interpreter of an environment with benchcoe-plugins installed executes that line.
Two measurements, side by side in one run:

1. wall time of ``python -c pass`` in two throw-away environments that see the same
   packages, one with the ``.pth`` line and one without, interleaved;
2. the line's own cost, executed in-process many times (precise, no process noise).

It also checks that a bare interpreter imports none of torch, lm_eval, transformers.

    python benchmarks/startup_cost.py [--runs 40]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PTH_NAME = "benchcoe_plugins.pth"


def installed_pth_line() -> str:
    path = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    if not path.is_file():
        raise SystemExit(f"{path} not found: install benchcoe-plugins in this environment first")
    return path.read_text()


def child_python(folder: Path, pth_line: str | None) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site_dir = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (site_dir / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    if pth_line:
        (site_dir / PTH_NAME).write_text(pth_line)
    return python


def wall_ms(python: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    line = installed_pth_line()

    with tempfile.TemporaryDirectory() as tmp:
        without = child_python(Path(tmp) / "without", None)
        with_hook = child_python(Path(tmp) / "with", line)
        times = {"without": [], "with": []}
        for _ in range(args.runs):
            times["without"].append(wall_ms(without))
            times["with"].append(wall_ms(with_hook))
        heavy = subprocess.run([str(with_hook), "-c", "import sys; print([m for m in ('torch', 'lm_eval', "
                                "'transformers', 'benchcoe_plugins') if m in sys.modules])"],
                               capture_output=True, text=True, check=True).stdout.strip()

    code = compile(line, PTH_NAME, "exec")
    saved = list(sys.meta_path)
    repeats = 2000
    start = time.perf_counter()
    for _ in range(repeats):
        exec(code, {})
        sys.meta_path[:] = saved
    line_us = (time.perf_counter() - start) / repeats * 1e6

    median_without, median_with = statistics.median(times["without"]), statistics.median(times["with"])
    print(f"python -c pass, median of {args.runs} interleaved runs: without hook {median_without:.2f} ms, "
          f"with hook {median_with:.2f} ms, difference {median_with - median_without:+.2f} ms")
    print(f"the .pth line itself, executed in-process: {line_us:.1f} us")
    print(f"modules a bare interpreter imports among torch/lm_eval/transformers/benchcoe_plugins: {heavy}")


if __name__ == "__main__":
    main()
