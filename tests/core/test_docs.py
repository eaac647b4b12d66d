"""The documentation against the code: the options tables against the argparse parsers, the
README's size, and every relative link in README.md and docs/*.md. Hand-written tables drift
from the code they describe; these tests make the drift a failure instead."""

import ast
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
from doc_tables import table_rows, without_code_blocks

from lenet5.config import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT = 15 * 1024  # bytes: a front page, not the manual (the manual is docs/)
OPTIONS_HEADER = ("group", "option", "default", "meaning")
# The two defaults the table describes rather than states: the parser's are absolute paths that
# depend on the user and the checkout.
DATA_DIR_CELL = "`~/.cache/lenet5/mnist`"
OUTPUT_DIR_CELL = "`runs/` in the project"
DATED = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")  # a dated results section's heading carries its date


def markdown_files():
    return [README, *sorted(DOCS.glob("*.md"))]


def is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_default(option, cell, default):
    """Assert that a table's default cell says what the parser's `default` is: a number as a
    plain number (`0.005` for 5e-3; a parenthesis after it, as in `0 (all)`, explains it), a
    string in code font (`max`), and an empty default or a flag's False as nothing or a phrase
    that is neither code nor a number."""
    text = re.sub(r"\s*\(.*\)$", "", cell).strip()  # "0 (all)" -> "0"
    code = re.fullmatch(r"`([^`]*)`", text)
    where = f"{option}: the table says {cell!r}, the parser {default!r}"
    if default is None or default is False or default == "":
        assert not code and not is_number(text), where
    elif isinstance(default, bool):
        raise AssertionError(f"{option}: a default of True; say how the table should show it ({where})")
    elif isinstance(default, (int, float)):
        assert not code and is_number(text) and float(text) == default, where
    elif isinstance(default, str):
        assert code and code.group(1) == default, where
    else:
        raise AssertionError(f"{option}: a default of type {type(default).__name__}; say how to compare it ({where})")


def option_table(path, header):
    """{option: (group, default cell)} from an options table; a blank group continues the one above."""
    table, group = {}, ""
    for cells in table_rows(path, header):
        row = dict(zip(header, cells))
        group = row.get("group") or group
        match = re.fullmatch(r"`(--[a-z0-9-]+)`", row["option"])
        assert match, f"{path.name}: one option per row, in code font, please: {row['option']!r}"
        assert match.group(1) not in table, f"{path.name}: {match.group(1)} has two rows"
        table[match.group(1)] = (group, row["default"])
    return table


def parser_options(parser):
    """{long option: (argument-group title, default)} of an argparse parser, --help left out."""
    options = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    options[flag] = (group.title, parser.get_default(action.dest))
    return options


@pytest.fixture
def train_parser(monkeypatch, tmp_path):
    """train.py's parser as a user without LENET5_DATA_DIR or XDG_CACHE_HOME, with `tmp_path` as
    home, gets it: so --data-dir's default is ~/.cache/lenet5/mnist, which the table states."""
    for name in ("LENET5_DATA_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    from lenet5.training.cli import build_parser

    return build_parser("pytorch")


def test_the_training_options_table_is_the_parser(train_parser):
    table = option_table(DOCS / "training.md", OPTIONS_HEADER)
    options = parser_options(train_parser)
    assert sorted(set(options) - set(table)) == [], "options of train.py without a row in docs/training.md"
    assert sorted(set(table) - set(options)) == [], "rows of docs/training.md that train.py does not have"
    for option, (group, default) in options.items():
        row_group, cell = table[option]
        assert row_group == group, f"{option}: group {row_group!r} in the table, {group!r} in the parser"
        if option == "--data-dir":
            assert cell == DATA_DIR_CELL
            assert Path(default) == Path(os.path.expanduser("~/.cache/lenet5/mnist"))
        elif option == "--output-dir":
            assert cell == OUTPUT_DIR_CELL
            assert Path(default) == ROOT / "runs"
        else:
            check_default(option, cell, default)


def test_the_predict_options_table_is_the_parser():
    from lenet5 import predict

    table = option_table(DOCS / "predict.md", ("option", "default", "meaning"))
    options = parser_options(predict.build_parser())
    assert set(table) == set(options)
    for option, (_, default) in options.items():
        if option == "--output":
            assert default is None and table[option][1] == "stdout"
        else:
            check_default(option, table[option][1], default)


@pytest.mark.parametrize(
    "option, cell, default",
    [
        ("--epochs", "16", 15),
        ("--lr", "0.05", 5e-3),
        ("--lr", "`0.005`", 5e-3),
        ("--pooling", "max", "max"),
        ("--pooling", "`avg`", "max"),
        ("--no-progress", "`False`", False),
        ("--resume", "0", ""),
    ],
)
def test_a_default_that_differs_fails(option, cell, default):
    with pytest.raises(AssertionError):
        check_default(option, cell, default)


@pytest.mark.parametrize(
    "option, cell, default",
    [
        ("--epochs", "15", 15),
        ("--lr", "0.005", 5e-3),
        ("--weight-decay", "0", 0.0),
        ("--threads", "0 (auto)", 0),
        ("--pooling", "`max`", "max"),
        ("--no-progress", "", False),
        ("--run-name", "framework-pooling-time", ""),
    ],
)
def test_a_default_that_matches_passes(option, cell, default):
    check_default(option, cell, default)


def test_a_table_without_a_row_for_an_option_fails(train_parser, tmp_path):
    train_parser.add_argument_group("run").add_argument("--brand-new", type=int, default=1)
    table = option_table(DOCS / "training.md", OPTIONS_HEADER)
    assert "--brand-new" in set(parser_options(train_parser)) - set(table)


def test_the_readme_is_a_front_page():
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size:,} bytes, over {README_LIMIT:,}: move detail into docs/"
    text = README.read_text()
    assert text.startswith("# lenet5\n")
    assert "make train" in text and "make test" in text


def slug(heading):
    """GitHub's anchor for a heading: its text without markup, lower case, without punctuation but
    hyphens and underscores, spaces as hyphens."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text only
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    found, seen = set(), {}
    for line in without_code_blocks(path.read_text()):
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            base = slug(heading.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path):
    """(line number, target) of every markdown link and image in `path`, outside code."""
    for number, line in enumerate(without_code_blocks(path.read_text()), 1):
        line = re.sub(r"`[^`]*`", "", line)  # code spans hold no links
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            yield number, target


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(path):
    broken = []
    for number, target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...: not ours to check
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{path.name}:{number}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{path.name}:{number}: {target} (no such heading in {dest.name})")
    assert broken == []


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_test_counts_outside_dated_sections(path):
    """Test counts change with every test: a page may state one only in a dated results section,
    beside the command that printed it."""
    heading, found = "", []
    for number, line in enumerate(without_code_blocks(path.read_text()), 1):
        if re.match(r"#{1,6}\s", line):
            heading = line
        elif re.search(r"\b\d[\d,]* (?:tests|test cases)\b", line) and not DATED.search(heading):
            found.append(f"{path.name}:{number}: {line.strip()}")
    assert found == []


def test_the_layout_lists_every_folder_and_every_module_of_lenet5():
    """docs/development.md's layout block against the tree: each folder git tracks at the top, and
    each module and folder of lenet5/ (indented under it, a folder's modules under the folder's
    line), has its line, and each line names something there."""
    block = (DOCS / "development.md").read_text().split("## Layout", 1)[1].split("```")[1]
    lines = block.strip("\n").splitlines()
    top = {line.split()[0] for line in lines if not line[0].isspace()}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    folders = {f"{path.split('/')[0]}/" for path in tracked.splitlines() if "/" in path and not path.startswith(".")}
    assert sorted(folders - top) == [], "folders without a line in the layout"
    assert sorted(name for name in top if not (ROOT / name).exists()) == [], "lines for what is not there"
    listed, folder = set(), ""
    for line in lines:
        if re.match(r"  \S", line):
            folder = line.split()[0] if line.split()[0].endswith("/") else ""
            listed.add(line.split()[0])
        elif re.match(r"    \S+\.py\s", line):
            listed.add(folder + line.split()[0])
    package = ROOT / "lenet5"
    there = {path.relative_to(package).as_posix() for path in package.rglob("*.py") if path.name != "__init__.py"}
    there |= {f"{path.parent.relative_to(package).as_posix()}/" for path in package.glob("*/__init__.py")}
    assert sorted(there - listed) == [] and sorted(listed - there - {"serve_static/"}) == []


# lenet5's layers from the bottom up (docs/development.md): a module imports from its own and lower ones.
LAYERS = [{"config", "files", "arguments", "envs"}, {"data"}, {"network"}, {"training"}, {"sweeps"}]


def layer_of(module):
    """The layer of lenet5.<module...>: its folder's, a base module's, else the commands' (the top)."""
    first = module.split(".")[1] if "." in module else ""
    return next((i for i, names in enumerate(LAYERS) if first in names), len(LAYERS))


def test_each_layer_of_lenet5_imports_only_from_its_own_and_lower_ones():
    found = []
    for path in (ROOT / "lenet5").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if target.split(".")[0] != "lenet5":
                    continue
                targets = [f"lenet5.{alias.name}" for alias in node.names] if target == "lenet5" else [target]
                found += [(module, t) for t in targets if layer_of(t) > layer_of(module)]
    assert found == [], "imports from a higher layer"
