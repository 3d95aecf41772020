"""Graph neural networks for event reconstruction: layers, architectures, task heads, loading."""
