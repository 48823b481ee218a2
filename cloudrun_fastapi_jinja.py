"""Jinja filters that place a free-text answer (description) safely in each kind of file.

cookiecutter.json loads them (`_extensions`; cookiecutter puts the template's folder on the import
path, and the module's name is unlikely to clash with an installed one). The pre-gen hook only
guarantees one printable line, so quotes, `$`, backticks, backslashes and `<>{}` all reach here.
"""

from __future__ import annotations

import re
import string

from jinja2 import Environment
from jinja2.ext import Extension

# Characters that start inline markup (CommonMark, GitHub's strikethrough, tables and math).
MARKDOWN_INLINE = frozenset("\\`*_[]<>&~|$!#")
# An ordered-list marker at the start of a line: "1." or "1)".
LIST_NUMBER = re.compile(r"^([0-9]{1,9})([.)])")


def quoted(value: str) -> str:
    """A double-quoted string literal valid in Python, TOML (basic string), YAML and JSON.

    The value is one printable line, so only the backslash and the quote need escaping; every
    other character is written as itself (UTF-8 files).
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def markdown_text(value: str) -> str:
    """One Markdown paragraph that renders as exactly `value`, with no markup of its own."""
    core = value.strip(" ")
    lead, trail = len(value) - len(value.lstrip(" ")), len(value) - len(value.rstrip(" "))
    escaped = "".join("\\" + char if char in MARKDOWN_INLINE else char for char in core)
    # A punctuation mark or a number first could open a heading, list, quote or rule.
    escaped = LIST_NUMBER.sub(r"\1\\\2", escaped)
    if escaped[:1] in string.punctuation and not escaped.startswith("\\"):
        escaped = "\\" + escaped
    # Leading spaces would make a code block, trailing ones are dropped: keep them as entities.
    return "&#32;" * lead + escaped + "&#32;" * trail


class EscapeExtension(Extension):
    """Registers the filters `quoted` and `markdown_text`."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["quoted"] = quoted
        environment.filters["markdown_text"] = markdown_text
