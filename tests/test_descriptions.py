"""Free-text descriptions: every file the description lands in still parses and says exactly it."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from markdown_it import MarkdownIt

from tests.conftest import TEMPLATE_ROOT, Bake
from tests.test_service_suite import make

MARKER = "DESCRIPTION_PAYLOAD_RAN"
TEMPLATE = TEMPLATE_ROOT / "{{cookiecutter.__dir_name}}"


def corpus(marker: Path) -> list[str]:
    """Natural descriptions and every character class that means something in some file."""
    return [
        'Answers "support" questions',
        "Bob's chat API (internal)",
        f"Runs $(touch {marker}) never",
        f"Runs `touch {marker}` never",
        'desc """; import os; os.system("x"); """',
        "x'''\"\"\" + __import__('os') + r'''\\",
        "Backslashes \\ and \\\\ and a trailing one \\",
        "<script>alert(1)</script> & <b>{braces}</b> {} { } }} ${HOME} $PATH",
        "# not a heading",
        "- not a list",
        "1. not a list either",
        "> not a quote",
        "---",
        "[a link](https://example.com) ![img](x.png) <https://example.com>",
        "*stars* _under_ ~~strike~~ `code` | a | b | $x + y$",
        "&amp; &lt; &#32; entities stay text",
        "   leading and trailing spaces   ",
        "key: value # not a YAML comment; [not, a, list]",
        "Répond aux questions — 日本語 ✓ 🚀",
        "%s %d {0} %(name)s",
        "d" * 200,
    ]


def markdown_text(source: str) -> str:
    """The text of a one-paragraph Markdown snippet; fails on any markup in it."""
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = md.parse(source)
    assert [token.type for token in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    children = tokens[1].children or []
    assert {child.type for child in children} <= {"text"}, [c.type for c in children]
    return "".join(child.content for child in children)


def readme_description(path: Path) -> str:
    """The README's description paragraph: the line after the title and a blank line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ")
    assert lines[1] == ""
    return markdown_text(lines[2])


def bash_syntax(path: Path) -> None:
    result = subprocess.run(["bash", "-n", path], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# suffix (or file name) -> parse the baked file; a parse error fails the test.
PARSERS: dict[str, Callable[[Path], Any]] = {
    ".py": lambda path: ast.parse(path.read_text(encoding="utf-8")),
    ".toml": lambda path: tomllib.loads(path.read_text(encoding="utf-8")),
    ".yml": lambda path: yaml.safe_load(path.read_text(encoding="utf-8")),
    ".yaml": lambda path: yaml.safe_load(path.read_text(encoding="utf-8")),
    ".json": lambda path: json.loads(path.read_text(encoding="utf-8")),
    ".sh": bash_syntax,
    ".md": readme_description,
}
USES_DESCRIPTION = re.compile(r"cookiecutter\.description\b")


def files_with_the_description() -> list[Path]:
    """Every template file that renders the description, relative to the generated repo."""
    return sorted(
        path.relative_to(TEMPLATE)
        for path in TEMPLATE.rglob("*")
        if path.is_file() and USES_DESCRIPTION.search(path.read_text(encoding="utf-8"))
    )


def test_every_file_with_the_description_has_a_parser() -> None:
    """A new place for the description needs an escape filter and a parser here."""
    found = files_with_the_description()
    assert {Path("pyproject.toml"), Path("README.md")} <= set(found)
    unparsed = [path for path in found if path.suffix not in PARSERS]
    assert unparsed == []


@pytest.mark.parametrize("case", range(len(corpus(Path(MARKER)))))
def test_description_is_accepted_and_every_output_parses(
    case: int, bake: Bake, tmp_path: Path
) -> None:
    """Each description bakes; every file it lands in parses and holds it exactly; nothing in
    it ever runs."""
    marker = tmp_path / MARKER
    description = corpus(marker)[case]
    project = bake(description=description)
    for relative in files_with_the_description():
        PARSERS[relative.suffix](project / relative)
    assert readme_description(project / "README.md") == description
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == description
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert recorded["description"] == description
    assert not marker.exists()


def test_baked_suite_passes_with_the_worst_description(
    bake: Bake, service_venv: Callable[[Path], Path], tmp_path: Path
) -> None:
    """Quotes, backslashes, `$(...)` and markup together: the service's own lint and tests pass."""
    worst = f"\"Q\" '$(touch {tmp_path / MARKER})' `x` \\ <b>{{}}</b> # - 1. ~~s~~ &amp; \\"
    project = bake(description=worst)
    result = make(project, service_venv(project), "lint", "test")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert not (tmp_path / MARKER).exists()
