"""An app as its admin describes it: ``<apps_dir>/<app-id>/app.yaml``.

:class:`AppDescriptor` is the shape of the file (the published JSON Schema is generated from it,
see :mod:`jobforms.schema`); :meth:`AppDescriptor.problems` adds what a schema cannot say: names
are unique, every rule parses and reads known parameters of the right kind, rules do not depend on
themselves, defaults fit, the command template is sound and the files it names are in the app's
folder. Each problem is a JSON path inside the file (``parameters[2].max``) and a sentence.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Annotated, Iterator, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .command import CommandItem, CommandTemplate, TemplateError
from .destination import DestinationKind
from .expressions import ExpressionError, ValueType, parse, referenced_names
from .parameters import (BooleanParameter, BoundMapping, ChoiceParameter, MultiChoiceParameter, Parameter,
                         ChoiceParameterBase, NumberParameterBase, choice_key)
from .paths import check_output_pattern, relative_path_problem
from .resources import ResourcesSpec

ICON_SUFFIXES = (".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp")
DESCRIPTOR_VERSION = 1


class Check(BaseModel):
    """A rule between parameters: ``rule`` must be true, else ``message`` is shown at ``field``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(description="Expression over parameters that must be true, e.g. 'steps * points <= 4e7'.")
    message: str = Field(min_length=1, description="The sentence the user sees when it is not.")
    field: Optional[str] = Field(None, description="Parameter that shows the message (default: the first one "
                                                   "the rule reads).")


class AppDescriptor(BaseModel):
    """The contents of ``app.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="NebulaHub job app")

    version: Literal[1] = Field(DESCRIPTOR_VERSION, description="Version of this descriptor format.")
    name: str = Field(min_length=1, max_length=100, description="The app's name in the Jobs page.")
    description: str = Field("", max_length=5000, description="What the app computes, a few sentences.")
    icon: Optional[str] = Field(None, description="An image file in the app's folder (svg, png, jpg) or an emoji.")
    category: str = Field("Other", min_length=1, max_length=60, description="Heading the app is listed under.")
    parameters: list[Parameter] = Field([], description="The form's fields, in order.")
    checks: list[Check] = Field([], description="Rules between parameters, each with its message.")
    resources: ResourcesSpec = ResourcesSpec()
    command: list[CommandItem] = Field(min_length=1, description="The program and its arguments; no shell.")
    outputs: list[Annotated[str, AfterValidator(check_output_pattern)]] = Field(
        [], description="Patterns of result files in the work folder, e.g. '*.dat' (empty: everything).")
    destinations: list[DestinationKind] = Field(
        list(DestinationKind), min_length=1, description="Where results may go: home (a new folder in the "
                                                         "user's home, the default), ftp, sftp, file URLs.")

    # ------------------------------------------------------------------------- derived facts
    def parameter(self, name: str):
        return next((p for p in self.parameters if p.name == name), None)

    def types(self) -> dict[str, ValueType]:
        return {p.name: p.value_type for p in self.parameters}

    def always_valued(self) -> set[str]:
        """Parameters that have a value whenever the form is valid (never hidden, never empty)."""
        return {p.name for p in self.parameters if p.visible_if is None and (
            isinstance(p, (BooleanParameter, MultiChoiceParameter))
            or (p.required and (p.enabled_if is None or p.default is not None)))}

    def template(self) -> CommandTemplate:
        return CommandTemplate.compile(self.command, {p.name: p.kind for p in self.parameters}, self.types(),
                                       self.always_valued())

    def dependencies(self, parameter) -> list[tuple[str, str]]:
        """(field, other parameter) for every rule of ``parameter`` that reads another one."""
        found = []
        for field in ("visible_if", "enabled_if", "min_from", "max_from"):
            rule = getattr(parameter, field, None)
            if isinstance(rule, str):
                found += [(field, n) for n in referenced_names(rule)]
            elif isinstance(rule, BoundMapping):
                found.append((field, rule.parameter))
        if isinstance(parameter, ChoiceParameterBase) and parameter.choices_from is not None:
            found.append(("choices_from", parameter.choices_from.parameter))
        return found

    def order(self) -> list:
        """Parameters so that each comes after those its rules read (checked acyclic by problems())."""
        done: dict[str, object] = {}

        def visit(p, path):
            if p.name in done or p.name in path:
                return
            for _, other in self.dependencies(p):
                if self.parameter(other) is not None:
                    visit(self.parameter(other), path | {p.name})
            done[p.name] = p

        for p in self.parameters:
            visit(p, frozenset())
        return list(done.values())

    # ------------------------------------------------------------------------- problems
    def problems(self, folder: Path | None = None) -> list[tuple[str, str]]:
        """Everything wrong beyond the schema, as (JSON path, sentence); empty when usable."""
        found = list(self._parameter_problems())
        found += [(f"resources.{where}", msg) for where, msg in self.resources.problems()]
        found += list(self._check_problems())
        try:
            template = self.template()
        except TemplateError as exc:
            found.append((f"command{exc.where}", str(exc)))
            template = None
        if folder is not None:
            found += self._file_problems(folder, template)
        elif self.icon is not None and not is_emoji(self.icon):
            found += [("icon", p) for p in [relative_path_problem(self.icon, "The icon")] if p]
        return found

    def _parameter_problems(self) -> Iterator[tuple[str, str]]:
        seen = set()
        types = self.types()
        for i, p in enumerate(self.parameters):
            at = f"parameters[{i}]"
            if p.name in seen:
                yield f"{at}.name", f"There are two parameters named '{p.name}'."
            seen.add(p.name)
            for where, message in p.static_problems():
                yield f"{at}.{where}", message
            for field in ("visible_if", "enabled_if"):
                source = getattr(p, field)
                if source is not None:
                    yield from _expression_problem(f"{at}.{field}", source, types, ValueType.BOOL)
            if p.enabled_if is not None and p.required and p.default is None \
                    and not isinstance(p, (BooleanParameter, MultiChoiceParameter)):
                yield f"{at}.default", "A required field that can be disabled needs a default (its value then)."
            if isinstance(p, NumberParameterBase):
                for field in ("min_from", "max_from"):
                    rule = getattr(p, field)
                    if isinstance(rule, str):
                        yield from _expression_problem(f"{at}.{field}", rule, types, ValueType.NUMBER)
                    elif rule is not None:
                        yield from self._mapping_problems(f"{at}.{field}", rule.parameter, rule.values)
            if isinstance(p, ChoiceParameterBase) and p.choices_from is not None:
                yield from self._choices_from_problems(f"{at}.choices_from", p)
        yield from self._cycle_problems()

    def _mapping_problems(self, at: str, other: str, mapping: dict) -> Iterator[tuple[str, str]]:
        source = self.parameter(other)
        if source is None:
            yield f"{at}.parameter", f"There is no parameter '{other}'."
            return
        possible = _possible_keys(source)
        if possible is not None:
            for key in mapping:
                if key not in possible:
                    yield f"{at}", f"'{key}' is not a value '{other}' can take ({', '.join(sorted(possible))})."

    def _choices_from_problems(self, at: str, p) -> Iterator[tuple[str, str]]:
        rule = p.choices_from
        yield from self._mapping_problems(at, rule.parameter, rule.choices)
        own = {choice_key(c.value) for c in p.options}
        for key, values in rule.choices.items():
            for j, value in enumerate(values):
                if choice_key(value) not in own:
                    yield f"{at}.choices.{key}[{j}]", f"'{choice_key(value)}' is not one of the parameter's choices."
            if isinstance(p, ChoiceParameter) and not values:
                yield f"{at}.choices.{key}", "A choice needs at least one value to offer."

    def _cycle_problems(self) -> Iterator[tuple[str, str]]:
        graph = {p.name: [(f, o) for f, o in self.dependencies(p) if self.parameter(o) is not None]
                 for p in self.parameters}
        for i, p in enumerate(self.parameters):
            for field, other in graph.get(p.name, []):
                path = _path(graph, other, p.name)
                if path is not None:
                    yield f"parameters[{i}].{field}", f"'{p.name}' depends on itself: {' -> '.join([p.name] + path)}."
                    break

    def _check_problems(self) -> Iterator[tuple[str, str]]:
        types = self.types()
        for i, check in enumerate(self.checks):
            yield from _expression_problem(f"checks[{i}].rule", check.rule, types, ValueType.BOOL)
            if not referenced_names(check.rule):
                yield f"checks[{i}].rule", "A check must read at least one parameter."
            if check.field is not None and check.field not in types:
                yield f"checks[{i}].field", f"There is no parameter '{check.field}'."

    def _file_problems(self, folder: Path, template: CommandTemplate | None) -> list[tuple[str, str]]:
        found = []
        if self.icon is not None and not is_emoji(self.icon):
            problem = relative_path_problem(self.icon, "The icon")
            if problem is None and not self.icon.lower().endswith(ICON_SUFFIXES):
                problem = f"The icon must be an emoji or an image file ({', '.join(ICON_SUFFIXES)})."
            if problem is None and not (folder / self.icon).is_file():
                problem = f"There is no file '{self.icon}' in the app's folder."
            if problem:
                found.append(("icon", problem))
        for where, relative in (template.app_files() if template else []):
            problem = relative_path_problem(relative, "The program's path")
            if problem is None and not (folder / relative).is_file():
                problem = f"There is no file '{relative}' in the app's folder."
            if problem:
                found.append((f"command{where}", problem))
        return found


def _expression_problem(at: str, source: str, types, expect: ValueType) -> Iterator[tuple[str, str]]:
    try:
        parse(source, types, expect)
    except ExpressionError as exc:
        yield at, str(exc)


def _path(graph, start: str, goal: str) -> list[str] | None:
    """The names from ``start`` to ``goal`` along dependencies (breadth first), or None."""
    parents, queue = {start: None}, [start]
    while queue:
        name = queue.pop(0)
        if name == goal:
            path = []
            while name is not None:
                path.append(name)
                name = parents[name]
            return path[::-1]
        for _, other in graph.get(name, []):
            if other not in parents:
                parents[other] = name
                queue.append(other)
    return None


def _possible_keys(parameter) -> set[str] | None:
    """The mapping keys a parameter's values can match, when they are a known list."""
    if isinstance(parameter, BooleanParameter):
        return {"true", "false"}
    if isinstance(parameter, ChoiceParameter):
        return {choice_key(c.value) for c in parameter.options}
    return None


def is_emoji(text: str) -> bool:
    """An icon written as a few pictographic characters (no letters, digits or path signs)."""
    return 0 < len(text) <= 8 and all(
        not ch.isascii() and unicodedata.category(ch)[0] in "SM" or ch in "\u200d\ufe0f" for ch in text)
