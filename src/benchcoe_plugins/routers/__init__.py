"""Routers: estimators that map documents to experts, saved as checkpoint folders."""

# The query router's heads (``QueryRouter(head=...)``), here so that command-line parsers can offer
# them without importing the router module.
QUERY_HEADS = ("independent", "pairwise", "knn")
