"""Graphs from events: node features (features.py), batched kNN (knn.py), batches (build.py)."""
