"""The program's argument list, from the descriptor's template and the checked values.

``command:`` in ``app.yaml`` is a list; each string becomes exactly one argument, with
``{name}`` placeholders replaced by a value's text (``{{`` and ``}}`` stand for braces):

.. code-block:: yaml

    command:
      - python3
      - "{app_dir}/ljj.py"
      - "--length={length}"
      - "--record={observables}"          # a multi-choice joined by its separator: one argument
      - "--channel={channels...}"         # the list form: one argument per chosen value
      - {args: ["--field", "{field}"]}    # a group: left out when field has no value (hidden, empty)
      - {when: "verbose", args: ["-v"]}   # a group used only when the expression is true

There is no shell anywhere: the result is an argv list for ``exec``, so a value holding spaces,
quotes, ``;`` or a line break is still one argument, as typed. The only way one value can become
several arguments is the explicit list form ``{name...}`` of a multi-choice parameter. Besides
parameters, placeholders may name the folder of the app (``app_dir``), the job's work folder
(``workdir``) and its resources (``backend``, ``nodes``, ``cores``, ``memory_mb``, ``walltime_s``).
The first argument, the program, is fixed by the admin: only ``{app_dir}`` may appear in it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field

from .expressions import Expression, ExpressionError, ValueType, parse

BUILTIN_PLACEHOLDERS = ("app_dir", "workdir", "backend", "nodes", "cores", "memory_mb", "walltime_s")
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}|[{}]")


class CommandGroup(BaseModel):
    """Arguments used together: only when ``when`` is true and every placeholder has a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: Optional[str] = Field(None, description="Expression over parameters; the group is used only when true.")
    args: list[str] = Field(min_length=1, description="Argument templates, each one argument.")


CommandItem = Union[str, CommandGroup]


@dataclass(frozen=True)
class Element:
    """One argument template: literal text and placeholders, in order.

    ``parts`` holds strings (literal text) and :class:`Placeholder` objects.
    """

    source: str
    parts: tuple

    @property
    def placeholders(self) -> list["Placeholder"]:
        return [p for p in self.parts if isinstance(p, Placeholder)]

    def render(self, texts: Mapping[str, str], lists: Mapping[str, Sequence[str]]) -> list[str]:
        spread = next((p for p in self.placeholders if p.spread), None)
        if spread is None:
            return ["".join(p if isinstance(p, str) else texts[p.name] for p in self.parts)]
        at = self.parts.index(spread)
        before, after = "".join(self.parts[:at]), "".join(self.parts[at + 1:])
        return [before + item + after for item in lists[spread.name]]


@dataclass(frozen=True)
class Placeholder:
    name: str
    spread: bool  # the list form {name...}


@dataclass(frozen=True)
class Group:
    when: Optional[Expression]
    elements: tuple[Element, ...]
    optional: bool  # written as a group: left out when a placeholder has no value


def parse_element(source: str) -> Element:
    """Split one argument template into literal text and placeholders; :class:`ValueError` if a
    brace is not part of a placeholder or of ``{{``/``}}``."""
    parts: list = []
    text, pos = "", 0
    for match in _TOKEN.finditer(source):
        text += source[pos:match.start()]
        token = match.group(0)
        if token in ("{{", "}}"):
            text += token[0]
        elif match.group(1):
            if text:
                parts.append(text)
            text = ""
            parts.append(Placeholder(match.group(1), bool(match.group(2))))
        else:
            raise ValueError(f"'{source}': a lone '{token}' at character {match.start() + 1}; "
                             "write {name} for a value, {{ or }} for a brace.")
        pos = match.end()
    text += source[pos:]
    if text:
        parts.append(text)
    if "\x00" in source:
        raise ValueError("A NUL character cannot be part of a program argument.")
    return Element(source, tuple(parts))


@dataclass(frozen=True)
class CommandTemplate:
    """A checked command template, ready to render."""

    groups: tuple[Group, ...]

    @classmethod
    def compile(cls, items: Sequence[CommandItem], kinds: Mapping[str, str],
                types: Mapping[str, ValueType], always: set[str]) -> "CommandTemplate":
        """Check ``items`` against the parameters (name -> kind, name -> expression type) of
        which ``always`` have a value whenever the form is valid. Raises :class:`TemplateError`."""
        if not items:
            raise TemplateError("", "The command is empty; it starts with the program to run.")
        groups = []
        for i, item in enumerate(items):
            where = f"[{i}]"
            if isinstance(item, str):
                group = Group(None, (_element(item, where, kinds, i == 0),), optional=False)
                for p in group.elements[0].placeholders:
                    if p.name in kinds and p.name not in always:
                        raise TemplateError(where, f"'{item}' uses '{p.name}', which can be hidden or empty; "
                                                   f"put it in a group ({{args: [...]}}) that is left out then.")
            else:
                if i == 0:
                    raise TemplateError(where, "The command starts with the program to run, not a group.")
                when = None
                if item.when is not None:
                    try:
                        when = parse(item.when, types, ValueType.BOOL)
                    except ExpressionError as exc:
                        raise TemplateError(f"{where}.when", str(exc)) from None
                elements = tuple(_element(a, f"{where}.args[{j}]", kinds, False) for j, a in enumerate(item.args))
                group = Group(when, elements, optional=True)
            groups.append(group)
        return cls(tuple(groups))

    def render(self, texts: Mapping[str, str], lists: Mapping[str, Sequence[str]],
               values: Mapping[str, object]) -> list[str]:
        """The argv: ``texts`` has the text of every name with a value (parameters, built-ins),
        ``lists`` the texts of each chosen value of multi-choice parameters, ``values`` the
        parameter values for ``when`` expressions (None: no value)."""
        argv: list[str] = []
        for group in self.groups:
            if group.when is not None and group.when.evaluate(values) is not True:
                continue
            names = {p.name for e in group.elements for p in e.placeholders}
            if any(n not in texts for n in names):
                if not group.optional:  # compile() made sure this cannot happen for a valid request
                    raise KeyError(f"no value for {sorted(n for n in names if n not in texts)}")
                continue
            for element in group.elements:
                argv.extend(element.render(texts, lists))
        return argv

    def names(self) -> set[str]:
        return {p.name for g in self.groups for e in g.elements for p in e.placeholders}

    def app_files(self) -> list[tuple[str, str]]:
        """(where, relative path) of every ``{app_dir}/path`` the command names."""
        found = []
        for i, group in enumerate(self.groups):
            for element in group.elements:
                parts = element.parts
                if len(parts) == 2 and parts[0] == Placeholder("app_dir", False) and isinstance(parts[1], str) \
                        and parts[1].startswith("/"):
                    found.append((f"[{i}]", parts[1][1:]))
        return found


class TemplateError(ValueError):
    """A command template that cannot be used; ``where`` is its place inside ``command``."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where


def _element(source: str, where: str, kinds: Mapping[str, str], program: bool) -> Element:
    try:
        element = parse_element(source)
    except ValueError as exc:
        raise TemplateError(where, str(exc)) from None
    holders = element.placeholders
    for p in holders:
        if p.name not in kinds and p.name not in BUILTIN_PLACEHOLDERS:
            raise TemplateError(where, f"'{source}': there is no parameter '{p.name}'. Parameters: "
                                       f"{', '.join(kinds) or 'none'}; also {', '.join(BUILTIN_PLACEHOLDERS)}.")
        if p.spread and kinds.get(p.name) != "multi-choice":
            raise TemplateError(where, f"'{source}': only a multi-choice parameter can spread over several "
                                       f"arguments ({{{p.name}...}}).")
    if any(p.spread for p in holders) and len(holders) > 1:
        raise TemplateError(where, f"'{source}': a {{name...}} list must be the only placeholder of its argument.")
    if program and any(p.name != "app_dir" for p in holders):
        raise TemplateError(where, f"'{source}': the program to run is fixed; only {{app_dir}} may appear in it.")
    if program and not source.strip():
        raise TemplateError(where, "The program to run is empty.")
    return element
