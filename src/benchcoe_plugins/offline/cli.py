"""``benchcoe offline-data``: seed the datasets cache so stock task names run offline.

    benchcoe offline-data              # seed $HF_HOME/datasets (or $HF_DATASETS_CACHE)
    benchcoe offline-data --check      # say whether it is seeded; exit 1 if not
    HF_DATASETS_OFFLINE=1 lm_eval --model hf ... --tasks mmlu_pro
    HF_DATASETS_OFFLINE=1 python -m lmms_eval --model coemodel ... --tasks mmmu_pro_standard
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="datasets cache folder (default: datasets' own, from HF_DATASETS_CACHE / HF_HOME)")
    parser.add_argument("--force", action="store_true", help="rewrite the cache folder even if already seeded")
    parser.add_argument("--check", action="store_true", help="only report whether the cache is seeded")


def run(args: argparse.Namespace) -> int:
    from benchcoe_plugins.offline import mmmu_pro, seed
    from benchcoe_plugins.offline.cache import MARKER, is_loaded_seed, loaded_folder

    if args.check:
        ok = True
        for name, module in ((seed.HUB_ID, seed), (f"{mmmu_pro.HUB_ID} ({mmmu_pro.CONFIG_NAME})", mmmu_pro)):
            target = module.seeded_folder(args.cache_dir)
            seeded = is_loaded_seed(target, module.FILE_PREFIX, module.SPLITS)  # module.is_seeded would hash again
            ok = ok and seeded
            loaded = loaded_folder(target)
            where = (f"offline loads read {loaded}, not written by benchcoe" if loaded not in (None, target)
                     else f"at {target}")
            print(f"{name}: {'seeded' if seeded else 'NOT seeded'} {where}")
        return 0 if ok else 1
    for name, folder in seed.seed_all(args.cache_dir, force=args.force).items():
        if not (folder / MARKER).is_file():
            print(f"{name}: not seeded: offline loads read {folder}, a copy not written by benchcoe (a download?), "
                  f"and a seeded copy would hide it; --force seeds anyway")
            continue
        rows = json.loads((folder / MARKER).read_text())["rows"]
        print(f"{name}: seeded {folder} ({', '.join(f'{k} {v} rows' for k, v in rows.items())})")
    print(f"{mmmu_pro.HUB_ID}: the records hold no images; every <image N> is a blank placeholder image.")
    print("Run the harness with HF_DATASETS_OFFLINE=1 (or HF_HUB_OFFLINE=1) so datasets uses this copy.")
    return 0
