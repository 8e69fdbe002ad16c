"""Routers: estimators that map documents to experts, saved as checkpoint folders."""
