"""Datasets: manifests, source adapters, splits, the prepared cache and the training dataset."""
