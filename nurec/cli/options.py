"""What every ``nurec`` command shares: help that states defaults, the method list, argument types."""

from __future__ import annotations

import argparse
import re
import textwrap

from nurec.io.predictions import prediction_file_format
from nurec.methods.registry import available_methods

_DEFAULT_STATED = re.compile(r"\bdefault\b", re.IGNORECASE)


class HelpFormatter(argparse.HelpFormatter):
    """Help in which every option states its default, and explicit line breaks in texts are kept.

    An option whose help does not mention its default gets "(default: VALUE)" appended,
    unless it is required or its default is None or False (a flag): those say in words
    what happens without them.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.required or default is None or default is False or default is argparse.SUPPRESS
                or _DEFAULT_STATED.search(text) or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Wrap each line of ``text`` on its own; an indented line's continuation lines hang below it."""
        lines = []
        for line in text.splitlines():
            words = " ".join(line.split())
            margin = indent + " " * (len(line) - len(line.lstrip()))
            hanging = margin + "    " if margin != indent else margin
            lines.append(textwrap.fill(words, width, initial_indent=margin, subsequent_indent=hanging)
                         if words else "")
        return "\n".join(lines)


class CommandParser(argparse.ArgumentParser):
    """The parser of ``nurec`` and of every subcommand (subparsers inherit the class): ``HelpFormatter`` help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def methods_epilog() -> str:
    """Return the registered methods, one per line with their description, for a command's help."""
    lines = [f"  {spec.name}: {spec.description}" for spec in available_methods()]
    return "registered methods:\n" + "\n".join(lines or ["  none"])


def method_names_help(default: str | None = "all registered") -> str:
    """Return help for a --methods option: the registered names (from the registry) and its default."""
    names = ", ".join(spec.name for spec in available_methods()) or "none"
    return f"comma-separated registered methods: {names}" + (f" (default: {default})" if default else "")


def positive_int(text: str) -> int:
    """Return ``text`` as an integer ≥ 1 (argparse type; anything else is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def check_predictions_out(path: str) -> str:
    """Return the format ("parquet" or "csv") of a predictions --out file; ValueError naming --out otherwise."""
    try:
        return prediction_file_format(path)
    except ValueError as err:
        raise ValueError(f"--out {err}") from None
