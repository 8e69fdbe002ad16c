"""Training and evaluating routers from benchmark records and harness sample logs.

- ``dataset``: the joined (documents x experts) correctness matrix, splits.
- ``records``: readers for the shared MMLU-Pro / MMMU record formats.
- ``sample_logs``: readers for lm-eval / lmms-eval ``--log_samples`` JSONL.
- ``metrics``: router accuracy, baselines, RouterEval metrics, per-subject tables.
- ``plots`` / ``reports``: PNG figures (matplotlib Agg) and JSON/Markdown reports.
- ``train_cli`` / ``evaluate_cli`` / ``report_cli``: the ``benchcoe`` subcommands.
"""
