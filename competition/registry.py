"""Names a recipe or a command gives (backbones, balancers, ensemblers, executors, optimizers, TTA
transforms), checked against their registry in one way, with a "did you mean" for a typo."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name(value: object, known: Iterable[str], what: str) -> str | None:
    """None when `value` is one of `known`; else the message: unknown <what> 'x'; did you mean 'y'?; known: ..."""
    names = sorted(known)
    if isinstance(value, str) and value in names:
        return None
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {value!r}{hint}; known: {', '.join(names)}"


def check_name(value: str, known: Iterable[str], what: str) -> str:
    """`value` when it is one of `known`; raises ValueError (pydantic turns it into the recipe key's
    message) naming the closest known name otherwise."""
    problem = unknown_name(value, known, what)
    if problem:
        raise ValueError(problem)
    return value
