"""Help of every ``nurec`` command: each option says its default; default outputs are git-ignored."""

import argparse
import fnmatch
from pathlib import Path

import pytest

from nurec.cli import build_parser
from nurec.cli.options import HelpFormatter, methods_epilog, positive_int
from nurec.methods.registry import available_methods

REPO = Path(__file__).resolve().parents[1]
FLAGS = (argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction, argparse._StoreFalseAction)


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("nurec",)):
    """Yield (command path, parser) for the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def options_with_defaults():
    """Return (command, option, help as shown) for every option that has a default to state."""
    rows = []
    for path, parser in commands(build_parser()):
        required_groups = [a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions]
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, FLAGS) or action.required:
                continue
            if action in required_groups:  # one of them is required: none has a default
                continue
            shown = formatter._expand_help(action) if action.help else ""
            rows.append((" ".join(path), action.option_strings[-1], shown))
    return rows


OPTIONS = options_with_defaults()


def test_the_commands_are_all_found():
    names = {command for command, _, _ in OPTIONS}
    for command in ("reconstruct", "evaluate", "client reconstruct", "display", "demo", "simulate", "train"):
        assert f"nurec {command}" in names


@pytest.mark.parametrize("command, option, shown", OPTIONS, ids=[f"{c} {o}" for c, o, _ in OPTIONS])
def test_every_option_states_its_default(command, option, shown):
    assert "default" in shown.lower(), f"{command} {option}: help does not state the default: {shown!r}"


def test_formatter_appends_defaults_once_and_keeps_line_breaks():
    parser = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter, epilog="methods:\n  a: one\n  b: two")
    parser.add_argument("--size", type=int, default=7, help="how many")
    parser.add_argument("--jobs", type=int, default=3, help="workers (default: all cores)")
    parser.add_argument("--model", default=None, help="a model")
    text = parser.format_help()
    assert "how many (default: 7)" in text
    assert "(default: all cores)" in text and "(default: 3)" not in text
    assert "a model (default" not in text  # None: the help says in words what happens
    assert "methods:\n  a: one\n  b: two" in text


def test_methods_epilog_lists_the_registry():
    text = methods_epilog()
    assert [line.split(":")[0].strip() for line in text.splitlines()[1:]] == [s.name for s in available_methods()]


def test_positive_int():
    assert positive_int("3") == 3
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)


def default_outputs():
    """Return (command, option, default) for output options whose default is a path in the working directory."""
    rows = []
    for path, parser in commands(build_parser()):
        for action in parser._actions:
            if "--out" in action.option_strings and isinstance(action.default, str) and action.default:
                if not Path(action.default).is_absolute():
                    rows.append((" ".join(path), action.default))
    return rows


def test_default_outputs_are_ignored_by_git():
    patterns = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    outputs = default_outputs()
    assert ("nurec demo", "demo_report") in outputs
    for command, default in outputs:
        anchored = "/" + default.strip("/")
        assert any(fnmatch.fnmatch(anchored, p.rstrip("/")) or fnmatch.fnmatch(anchored.lstrip("/"), p.rstrip("/"))
                   for p in patterns), f"{command} --out {default}: not in .gitignore"
