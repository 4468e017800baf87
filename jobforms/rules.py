"""The one pass that turns what a user typed into checked values, field states and errors.

The form's description, the live check while typing and the check at submit all come from
:meth:`Rules.evaluate`, so they cannot disagree. For each parameter, in an order where the
parameters a rule reads come first:

1. ``visible_if`` false (or unknown: it reads a field without a value): the field is hidden, not
   required, and any value sent for it is dropped.
2. ``enabled_if`` false or unknown: the field is shown but keeps its default, whatever was sent.
3. The limits in force are computed: ``min_from`` / ``max_from`` narrow the range, ``choices_from``
   the choices, from the other parameters' current values.
4. The value is read (a missing key means "not typed yet": the default is used, and a default the
   narrowed limits no longer allow follows them) and checked against those limits.

Then the resources (the backend's own bounds follow the chosen backend), the result destination,
and the cross-field checks whose parameters all have values. A field absent from the input that
is required and has no default is an error only at submit (``partial=False``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from .descriptor import AppDescriptor
from .destination import parse_destination
from .expressions import UNKNOWN, ExpressionError, ValueType, parse
from .parameters import (BoundMapping, ChoiceParameter, IntegerParameter, MultiChoiceParameter, ChoiceParameterBase,
                         NumberParameterBase, choice_key)
from .resources import LABELS, RESOURCES, BackendOffer, Bounds

FORM_KEY = "form"  # where an error about the whole input (not a mapping) is reported


@dataclass
class FieldState:
    """One field after evaluation: its checked value (None: no value) and what the form shows."""

    name: str
    value: Any = None
    error: Optional[str] = None
    missing: bool = False  # the error only says "required" about a field not sent at all
    visible: bool = True
    enabled: bool = True
    low: Any = None
    high: Any = None
    choices: Optional[list] = None  # the choices offered now (None: all of them)


@dataclass
class Evaluation:
    """All fields of a form for one input, parameters first, then resources and destination."""

    fields: dict[str, FieldState]
    unknown: dict[str, str] = field(default_factory=dict)  # keys sent that are not fields

    def errors(self, partial: bool) -> dict[str, str]:
        found = {n: s.error for n, s in self.fields.items() if s.error and not (partial and s.missing)}
        return {**found, **self.unknown}

    def value(self, name: str):
        return self.fields[name].value


class Rules:
    """An app's fields and rules, compiled once; :meth:`evaluate` runs them on an input."""

    def __init__(self, descriptor: AppDescriptor, backends: list[BackendOffer]):
        types = descriptor.types()
        self.descriptor = descriptor
        self.parameters = descriptor.order()
        self.offers = {o.backend: o for o in backends}
        self._conditions = {}
        for p in descriptor.parameters:
            for attr in ("visible_if", "enabled_if"):
                source = getattr(p, attr)
                if source is not None:
                    self._conditions[(p.name, attr)] = parse(source, types, ValueType.BOOL)
            for attr in ("min_from", "max_from"):
                source = getattr(p, attr, None)
                if isinstance(source, str):
                    self._conditions[(p.name, attr)] = parse(source, types, ValueType.NUMBER)
        self._checks = [(parse(c.rule, types, ValueType.BOOL), c) for c in descriptor.checks]
        self.backend_field = ChoiceParameter.model_construct(
            name="backend", kind="choice", label="Backend", required=True, choices=[o.backend for o in backends],
            help="Where the job runs: a cloud VM or a batch system.", default=backends[0].backend)
        self.resource_fields = {name: IntegerParameter.model_construct(
            name=name, kind="integer", label=LABELS[name][0], units=LABELS[name][1], required=True, min=1)
            for name in RESOURCES}

    def field_names(self) -> list[str]:
        return [p.name for p in self.descriptor.parameters] + ["backend", *RESOURCES, "destination"]

    def widest(self, resource: str) -> Bounds:
        """A resource's bounds over every backend (when no valid backend is chosen)."""
        bounds = [o.bounds[resource] for o in self.offers.values()]
        highs = [b.max for b in bounds]
        first = bounds[0]
        return Bounds(min(b.min for b in bounds), None if None in highs else max(highs), first.default)

    # ------------------------------------------------------------------------- the pass
    def evaluate(self, values: Any) -> Evaluation:
        if not isinstance(values, Mapping):
            states = {n: FieldState(n) for n in self.field_names()}
            return Evaluation(states, {FORM_KEY: "The form's values must be a mapping of field names to values."})
        known: dict[str, Any] = {}
        states: dict[str, FieldState] = {}
        for p in self.parameters:
            state = self._parameter(p, values, known)
            states[p.name] = state
            known[p.name] = None if state.error else state.value
        states = {p.name: states[p.name] for p in self.descriptor.parameters}  # the form's order
        self._resources(values, states)
        self._destination(values, states)
        self._cross_checks(known, states)
        names = set(states)
        unknown = {}
        for key in values:
            if key not in names:
                shown = key if isinstance(key, str) and len(key) <= 60 and key.isprintable() else repr(key)[:60]
                unknown[str(key)[:100]] = f"There is no field '{shown}' in this form."
        return Evaluation(states, unknown)

    def _parameter(self, p, values: Mapping, known: Mapping) -> FieldState:
        state = FieldState(p.name)
        if not self._condition(p.name, "visible_if", known):
            state.visible = False
            return state
        state.enabled = self._condition(p.name, "enabled_if", known)
        state.low, state.high, state.choices = self._limits(p, known)
        given = state.enabled and p.name in values
        raw = values[p.name] if given else p.default
        try:
            value = None if p.empty(raw) else p.convert(raw)
        except ValueError as exc:
            state.error = str(exc)
            return state
        if value is not None and not given:
            value = self._follow_limits(p, value, state)
        if value is not None:
            state.error = p.limit_problem(value, state.low, state.high, state.choices)
        if (value is None or value == []) and p.required and not state.error:
            state.error = (f"Choose at least one for {p.shown_name}." if isinstance(p, MultiChoiceParameter)
                           else f"{p.shown_name} is required.")
            state.missing = p.name not in values
        state.value = value
        return state

    def _condition(self, name: str, attr: str, known: Mapping) -> bool:
        expression = self._conditions.get((name, attr))
        if expression is None:
            return True
        try:
            return expression.evaluate(known) is True  # unknown: hidden / disabled
        except ExpressionError:
            return False

    def _limits(self, p, known: Mapping) -> tuple:
        if isinstance(p, NumberParameterBase):
            low = self._bound(p, "min_from", known)
            high = self._bound(p, "max_from", known)
            low, high = p.tighten(low, high)
            return low, high, None
        if isinstance(p, ChoiceParameterBase) and p.choices_from is not None:
            other = known.get(p.choices_from.parameter)
            listed = None if other is None else p.choices_from.choices.get(choice_key(other))
            if listed is not None:
                keys = {choice_key(v) for v in listed}
                return None, None, [c.value for c in p.options if choice_key(c.value) in keys]
        return None, None, None

    def _bound(self, p, attr: str, known: Mapping):
        rule = getattr(p, attr)
        if isinstance(rule, BoundMapping):
            other = known.get(rule.parameter)
            return None if other is None else rule.values.get(choice_key(other))
        if rule is None:
            return None
        try:
            result = self._conditions[(p.name, attr)].evaluate(known)
        except ExpressionError:
            return None
        if result is UNKNOWN or not math.isfinite(result):
            return None
        return result

    @staticmethod
    def _follow_limits(p, value, state: FieldState):
        """A default (nothing typed) that the limits in force no longer allow follows them."""
        if isinstance(p, NumberParameterBase):
            if state.low is not None and state.high is not None and state.low > state.high:
                return value  # nothing fits; the error says so
            return p.snap(value, state.low, state.high)
        if state.choices is None:
            return value
        offered = {choice_key(v) for v in state.choices}
        if isinstance(p, MultiChoiceParameter):
            return [v for v in value if choice_key(v) in offered]
        if choice_key(value) not in offered and state.choices:
            return state.choices[0]
        return value

    # ------------------------------------------------------------------------- resources, results, checks
    def _resources(self, values: Mapping, states: dict[str, FieldState]) -> None:
        backend = FieldState("backend", choices=list(self.offers))
        raw = values.get("backend", self.backend_field.default)
        try:
            backend.value = self.backend_field.convert(raw)
        except ValueError as exc:
            backend.error = str(exc)
        states["backend"] = backend
        offer = self.offers.get(backend.value)
        for name in RESOURCES:
            bounds = offer.bounds[name] if offer else self.widest(name)
            state = FieldState(name, low=bounds.min, high=bounds.max)
            spec = self.resource_fields[name]
            try:
                state.value = spec.convert(values[name]) if name in values else bounds.default
                state.error = spec.limit_problem(state.value, bounds.min, bounds.max)
            except ValueError as exc:
                state.error = str(exc)
            states[name] = state

    def _destination(self, values: Mapping, states: dict[str, FieldState]) -> None:
        state = FieldState("destination")
        try:
            state.value = parse_destination(values.get("destination"), tuple(self.descriptor.destinations))
        except ValueError as exc:
            state.error = str(exc)
            state.value = None
        states["destination"] = state

    def _cross_checks(self, known: Mapping, states: dict[str, FieldState]) -> None:
        for expression, check in self._checks:
            try:
                result = expression.evaluate(known)
            except ExpressionError:
                result = False  # cannot be verified (e.g. a division by zero): not accepted
            if result is UNKNOWN or result is True:
                continue
            # every parameter the rule reads has a value here, so is visible and valid;
            # the message goes to the admin's field, or the first of them without a message yet
            names = ([check.field] if check.field else []) + list(expression.names)
            target = next((states[n] for n in names if states[n].visible and not states[n].error), None)
            if target is not None:
                target.error = check.message
