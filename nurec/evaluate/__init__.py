"""Reconstruction quality: metrics (pure functions), figures, and the HTML/JSON report."""
