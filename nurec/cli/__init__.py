"""The ``nurec`` command: one entry point, one module per subcommand.

Each command module defines ``register(subparsers)``, which adds its subparser and sets
``func`` to a function taking the parsed arguments and returning an exit code. Commands
parse arguments and call library functions; nothing else. Every parser is a
``nurec.cli.options.CommandParser``, whose help states each option's default.

The library's own commands are listed in ``COMMAND_MODULES``. Packages built on the
library add theirs through the ``nurec.commands`` entry-point group (the simulator:
``simulate``, ``demo``, ``pipeline``; the server: ``serve``), so the arrows run one way:
``nurec`` never imports ``sim`` or ``services``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from importlib.metadata import entry_points
from types import ModuleType

from nurec.cli.options import CommandParser
from nurec.io.integrity import ChecksumWarning
from nurec.io.parquet import DatasetError
from nurec.version import __version__

COMMAND_MODULES = [
    "nurec.cli.evaluate",
    "nurec.cli.convert",
    "nurec.cli.client",
    "nurec.cli.inspect",
    "nurec.cli.display",
    "nurec.cli.train",
    "nurec.cli.reconstruct",
    "nurec.cli.tables",
]
COMMAND_ENTRY_POINTS = "nurec.commands"
"""Entry-point group through which other packages add subcommands (value: a command module)."""

# Errors a user can fix: printed as one line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, DatasetError)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every registered subcommand."""
    parser = CommandParser(prog="nurec", description="Neutrino event reconstruction.")
    parser.add_argument("--version", action="version", version=f"nurec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        module.register(subparsers)
    return parser


def command_modules() -> list[ModuleType]:
    """Return the library's command modules, then those registered by installed packages."""
    modules = [importlib.import_module(name) for name in COMMAND_MODULES]
    for entry in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda e: e.name):
        modules.append(entry.load())
    return modules


def main(argv: list[str] | None = None) -> int:
    """Run the nurec command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            _warnings_as_one_line(args.command)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("nurec: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"nurec {args.command}: error: {message}", file=sys.stderr)
        return 1


def _warnings_as_one_line(command: str) -> None:
    """Print nurec's own warnings (an unverifiable dataset) as one line like its errors, no source line."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ChecksumWarning):
            print(f"nurec {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", ChecksumWarning)  # issued once per dataset where it is raised
    warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
