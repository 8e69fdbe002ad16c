"""Bench-CoE (Collaboration of Experts from Benchmark) for lm-eval and lmms-eval.

Importing this package is cheap: torch, transformers and the harnesses are imported
only when a model is built or a router is trained.
"""

__version__ = "0.1.0"
