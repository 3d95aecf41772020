"""Subcommands the simulator adds to the ``nurec`` command (registered as ``nurec.commands`` entry points)."""
