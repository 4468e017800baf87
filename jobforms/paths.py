"""The shape of paths written in forms and descriptors: relative, inside, printable.

Only the syntax is checked here; whether a file exists and where it really is are the job
service's questions (it resolves a user's path against their allowed roots, as
:mod:`panel_apps.paths` does for the plotting app). What passes here can never name a place
above its base: no absolute path, no ``~``, no ``..`` component, no NUL or other control
character (a NUL cannot even be passed to a program).
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

MAX_PATH_LENGTH = 4096


def relative_path_problem(text, what: str = "The path") -> str | None:
    """Why ``text`` is not a safe relative path (a sentence starting with ``what``), or None."""
    if not isinstance(text, str):
        return f"{what} must be text."
    if not text.strip():
        return f"{what} is empty."
    if len(text) > MAX_PATH_LENGTH:
        return f"{what} is longer than {MAX_PATH_LENGTH} characters."
    if any(not ch.isprintable() for ch in text):
        return f"{what} contains a control character (a line break, a tab or a NUL); names cannot hold those."
    if text.startswith(("/", "~")) or "\\" in text:
        return f"{what} must be relative to its folder, without '/' or '~' at the start or backslashes."
    if ".." in PurePosixPath(text).parts:
        return f"{what} must not contain '..': it cannot leave its folder."
    return None


def check_relative_path(text, what: str = "The path") -> str:
    """``text`` if it is a safe relative path, else :class:`ValueError` with the sentence."""
    problem = relative_path_problem(text, what)
    if problem:
        raise ValueError(problem)
    return text


def check_output_pattern(text) -> str:
    """A glob of result files, e.g. ``*.dat`` or ``plots/**/*.png``, relative to the work folder."""
    check_relative_path(text, "An output pattern")
    try:
        fnmatch.translate(text)
    except re.error:  # pragma: no cover - translate escapes what it cannot use
        raise ValueError(f"'{text}' is not a valid file pattern.") from None
    return text
