"""What dominates a build or an image: the builder's steps timed, and the layers one image has
beyond another. Pure functions over the docker CLI's text output."""

from __future__ import annotations

import re

# The classic builder announces each instruction as `Step 5/9 : COPY app ./app`; BuildKit
# prints no such lines, and then no step is reported.
_STEP = re.compile(r"^Step \d+/\d+ : (.+)$")


def step_durations(timed_lines: list[tuple[float, str]], end: float) -> list[tuple[str, float]]:
    """(instruction, seconds) for each step: from its line to the next step's line (or `end`),
    slowest first."""
    starts = [(at, match[1]) for at, line in timed_lines if (match := _STEP.match(line))]
    if not starts:
        return []
    ends = [at for at, _ in starts[1:]] + [end]
    steps = [(step, stop - at) for (at, step), stop in zip(starts, ends, strict=True)]
    return sorted(steps, key=lambda step: step[1], reverse=True)


def extra_layers(history: str, reference_history: str) -> list[tuple[str, str]]:
    """(instruction, size) of the non-empty layers in `history` whose instruction the reference
    image does not have; each history line is `CreatedBy<TAB>Size`."""

    def layers(text: str) -> list[tuple[str, str]]:
        rows = (line.rsplit("\t", 1) for line in text.splitlines() if "\t" in line)
        return [(created.strip(), size.strip()) for created, size in rows]

    known = {created for created, _ in layers(reference_history)}
    return [(c, s) for c, s in layers(history) if c not in known and s not in ("0B", "0")]
