"""Training of the graph networks: config (config.py), data (data.py), checkpoints, loop."""
