"""HTCondor's argument and environment syntaxes, read the way HTCondor reads them.

Written from HTCondor's ``condor_utils/condor_arglist.cpp`` (``split_args``,
``V2QuotedToV2Raw``, ``AppendArgsV1Raw_unix``) and ``env.cpp``, not from the backend's quoting,
so a test that reads the backend's output with these functions checks it independently.
"""
from __future__ import annotations

V2_BLANKS = " \t\n\r"


class SyntaxProblem(ValueError):
    """The value does not parse; the message is HTCondor's kind of sentence."""


def split_v2_raw(text: str) -> list[str]:
    """``split_args``: blanks separate words; a ``'...'`` section keeps blanks and quotes, with
    ``''`` for one ``'``; sections and plain characters join into one word."""
    words, word, in_word, i = [], [], False, 0
    while i < len(text):
        c = text[i]
        if c == "'":
            in_word, i = True, i + 1
            while True:
                if i >= len(text):
                    raise SyntaxProblem(f"Unbalanced quote starting here: {text[i:]}")
                if text[i] == "'":
                    if text[i + 1:i + 2] == "'":
                        word.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                word.append(text[i])
                i += 1
        elif c in V2_BLANKS:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
        else:
            word.append(c)
            in_word, i = True, i + 1
    if in_word:
        words.append("".join(word))
    return words


def v2_quoted_to_raw(text: str) -> str:
    """``V2QuotedToV2Raw``: strip the outer double quotes, ``""`` is one ``"``."""
    s = text.lstrip()
    if not s.startswith('"'):
        raise SyntaxProblem("Expecting double-quoted input string (V2 format).")
    raw, i = [], 1
    while i < len(s):
        if s[i] == '"':
            if s[i + 1:i + 2] == '"':
                raw.append('"')
                i += 2
                continue
            rest = s[i + 1:]
            if rest.strip():
                raise SyntaxProblem("Unexpected characters following double-quote. Did you "
                                    f"forget to escape the double-quote by repeating it? {rest}")
            return "".join(raw)
        raw.append(s[i])
        i += 1
    raise SyntaxProblem("Unterminated double-quote.")


def parse_arguments(value: str) -> list[str]:
    """The ``arguments`` submit command: new syntax when it starts with ``"``, else old (V1:
    split on blanks, no quoting)."""
    if value.lstrip().startswith('"'):
        return split_v2_raw(v2_quoted_to_raw(value))
    return value.split()


def parse_environment(value: str) -> dict[str, str]:
    """The ``environment`` submit command: new syntax (words ``NAME=value``) when it starts
    with ``"``, else old (``NAME=value;NAME=value``)."""
    if value.lstrip().startswith('"'):
        entries = split_v2_raw(v2_quoted_to_raw(value))
    else:
        entries = [e for e in value.split(";") if e.strip()]
    env = {}
    for entry in entries:
        name, sep, val = entry.partition("=")
        if not sep or not name.strip():
            raise SyntaxProblem(f"ERROR: Missing '=' after environment variable '{entry}'.")
        env[name] = val
    return env
