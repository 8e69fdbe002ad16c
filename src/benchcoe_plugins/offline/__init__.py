"""Offline benchmark data: seed the Hugging Face datasets cache from the shipped copies."""
