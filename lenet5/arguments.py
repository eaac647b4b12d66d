"""What every command's command line shares: argparse types that check a value and say in one
line what is wrong, the parser (errors in one line) and help format (every default stated), and how
a command names itself."""

import argparse
import math
import os
import textwrap
from pathlib import Path


def printable(text):
    """`text` with what a terminal would not show, or would break the line at, escaped: a file
    name may hold anything but "/" and NUL, and a message stays one line."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in text)


def prog(module):
    """How the command `module` names itself in its usage and errors: as the lenet5 command's mode
    that ran it (lenet5/command.py sets LENET5_PROG to "module:lenet5 mode"), else as `python -m` runs it."""
    ran, _, name = os.environ.get("LENET5_PROG", "").partition(":")
    return name if ran == module and name else f"python -m {module}"


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not argparse's usage block: the user sees at once what to fix."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def exit(self, status=0, message=None):
        super().exit(status, message and printable(message.rstrip("\n")) + "\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):
        """State every default, except empty ones ("(default: )" helps nobody)."""
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)

    def _split_lines(self, text, width):
        """argparse's, but never at a hyphen: an option or a recipe (paper-distorted) stays whole."""
        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)


def _number(kind, low, low_ok):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value) or value < low or (value == low and not low_ok):
            raise argparse.ArgumentTypeError(f"must be {'>=' if low_ok else '>'} {low}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int, non_negative_int = _number(int, 0, False), _number(int, 0, True)
positive_float, non_negative_float = _number(float, 0.0, False), _number(float, 0.0, True)


def fraction(text):
    """An argparse type: a number from 0 up to, not including, 1 (a rate, a share)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be < 1, got {text}")
    return value


fraction.__name__ = "float"


def folder_problem(path, writable=True):
    """Why `path` cannot be a folder to write in (None if it can): a file is there, or the
    nearest folder that exists on the way is a file or not writable. Nothing is made."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        return "not a folder"
    nearest = next(folder for folder in (path, *path.parents) if folder.exists())
    if not nearest.is_dir():
        return f"{nearest} is a file, not a folder"
    if writable and not os.access(nearest, os.W_OK | os.X_OK):
        return f"{nearest} is not writable"
    return None


def folder(writable=True):
    """An argparse type: a folder that exists or can be made (and, if `writable`, written in)."""

    def parse(text):
        problem = "an empty name" if not text else folder_problem(text, writable)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        return text

    parse.__name__ = "folder"
    return parse


def new_file(text):
    """An argparse type: a file to make, never overwritten; its folder is made if need be."""
    if not text:
        raise argparse.ArgumentTypeError("an empty name")
    path = Path(text).expanduser()
    if path.exists() or path.is_symlink():
        raise argparse.ArgumentTypeError(f"{text} already exists; choose another name")
    problem = folder_problem(path.parent)
    if problem:
        raise argparse.ArgumentTypeError(f"{text}: its folder {path.parent}: {problem}")
    return path


def run_name(text):
    """An argparse type: one folder's name, inside --output-dir whatever it holds ("": the default)."""
    if "/" in text or "\\" in text or ".." in text or text == ".":
        raise argparse.ArgumentTypeError(f"{text!r}: a run name is one folder's name, without '/', '\\' or '..'")
    return text
