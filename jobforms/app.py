"""An app compiled from its descriptor: the form, the checks, the submit model and the command.

One :class:`App` per ``<apps_dir>/<app-id>/`` (made by :func:`jobforms.loader.load_apps`). All of
its answers come from one evaluation of the values (:mod:`jobforms.rules`):

* :meth:`App.form` describes the fields for the Jobs page (shown, enabled, bounds, choices, error);
* :meth:`App.check` is the live check while the user types (a field not sent yet is not missing);
* :meth:`App.validate` is the check at submit and gives the :class:`~jobforms.request.JobRequest`;
* :attr:`App.model` is the same check as a pydantic model of the flat submit body, and
  :meth:`App.request_schema` its JSON Schema for the REST API;
* :meth:`App.command` builds the program's argv from a request: a list, never a shell line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic_core import PydanticCustomError

from .descriptor import AppDescriptor, is_emoji
from .form import FormField, describe
from .parameters import FileParameter, MultiChoiceParameter, value_annotation
from .request import JobRequest, JobRequestError
from .resources import RESOURCES, BackendOffer, ResourceRequest
from .rules import FORM_KEY, Evaluation, Rules


class App:
    """A job app as users see it; see the module docstring for what it answers."""

    def __init__(self, app_id: str, folder: Path, descriptor: AppDescriptor, backends: list[BackendOffer]):
        self.id = app_id
        self.folder = Path(folder)
        self.descriptor = descriptor
        self.rules = Rules(descriptor, backends)
        self.template = descriptor.template()
        self.model = self._build_model()

    # ------------------------------------------------------------------------- what the page lists
    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def description(self) -> str:
        return self.descriptor.description

    @property
    def category(self) -> str:
        return self.descriptor.category

    @property
    def icon(self) -> Optional[str]:
        """The emoji, or None when the icon is a file (:attr:`icon_path`) or not given."""
        icon = self.descriptor.icon
        return icon if icon is not None and is_emoji(icon) else None

    @property
    def icon_path(self) -> Optional[Path]:
        icon = self.descriptor.icon
        return self.folder / icon if icon is not None and not is_emoji(icon) else None

    @property
    def backends(self) -> list[str]:
        return list(self.rules.offers)

    @property
    def outputs(self) -> list[str]:
        """Globs of result files in the work folder (empty: keep everything)."""
        return list(self.descriptor.outputs)

    # ------------------------------------------------------------------------- the form and its checks
    def form(self, values: Optional[dict] = None) -> list[FormField]:
        """The fields for the current ``values`` (None: a fresh form)."""
        return describe(self.rules, self.rules.evaluate(values or {}))

    def check(self, values: dict) -> dict[str, str]:
        """Live check of partial input: ``{field: sentence}``; fields not sent yet are not missing."""
        return self.rules.evaluate(values).errors(partial=True)

    def validate(self, values: Any) -> JobRequest:
        """The job request for complete ``values``, or :class:`JobRequestError` with every field's error."""
        try:
            checked = self.model.model_validate(values)
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                errors.setdefault(str(error["loc"][0]) if error["loc"] else FORM_KEY, error["msg"])
            raise JobRequestError(errors) from None
        return self._request(checked)

    def request_schema(self) -> dict:
        """JSON Schema of the submit body (the flat values) for the REST API's OpenAPI document."""
        return self.model.model_json_schema()

    def form_values(self, request: JobRequest) -> dict:
        """The flat values a request came from: ``validate(form_values(r)) == r``."""
        return request.form_values([p.name for p in self.descriptor.parameters])

    def file_parameters(self, request: JobRequest) -> dict[str, str]:
        """The user's relative path of every file parameter with a value, for the service to resolve."""
        return {p.name: request.parameters[p.name] for p in self.descriptor.parameters
                if isinstance(p, FileParameter) and p.name in request.parameters}

    # ------------------------------------------------------------------------- the command
    def command(self, request: JobRequest, *, workdir: str | os.PathLike, files: Optional[dict] = None,
                app_dir: str | os.PathLike | None = None) -> list[str]:
        """The argv running ``request`` in ``workdir``.

        ``files`` maps each file parameter of the request to the real path the service resolved;
        ``app_dir`` is where this app's folder is on the machine that runs it (default: here).
        The request is checked again first (:class:`JobRequestError` if it no longer fits the
        app). Every value is one list element, or one per chosen value in a ``{name...}``.
        """
        if request.app_id != self.id:
            raise ValueError(f"This request is for the app '{request.app_id}', not '{self.id}'.")
        request = self.validate(self.form_values(request))
        files = dict(files or {})
        texts: dict[str, str] = {}
        lists: dict[str, list[str]] = {}
        for p in self.descriptor.parameters:
            if p.name not in request.parameters:
                continue
            value = request.parameters[p.name]
            if isinstance(p, FileParameter):
                if p.name not in files:
                    raise ValueError(f"The resolved path of the file parameter '{p.name}' was not given.")
                texts[p.name] = _argument(files[p.name], f"The path of '{p.name}'")
            elif isinstance(p, MultiChoiceParameter):
                lists[p.name] = [p.as_text(v) for v in value]
                texts[p.name] = p.joined(value)
            else:
                texts[p.name] = p.as_text(value)
        texts["app_dir"] = _argument(app_dir if app_dir is not None else self.folder, "The app folder")
        texts["workdir"] = _argument(workdir, "The work folder")
        texts["backend"] = request.resources.backend
        texts.update({name: str(getattr(request.resources, name)) for name in RESOURCES})
        return self.template.render(texts, lists, request.parameters)

    # ------------------------------------------------------------------------- the pydantic model
    def _build_model(self) -> type[BaseModel]:
        always = self.descriptor.always_valued()
        fields: dict[str, Any] = {}
        for i, p in enumerate(self.descriptor.parameters):
            annotation = value_annotation(p)
            # the parameter's name is the field's alias: names like "json", "copy" or "_x" are fine
            # for an admin but would shadow BaseModel's own attributes as Python field names
            info = {"title": p.shown_name, "description": _description(p.help, p.units), "alias": p.name}
            if p.name in always:
                default = p.default if p.default is not None else ...
                fields[f"parameter_{i}"] = (annotation, Field(default, **info))
            else:
                fields[f"parameter_{i}"] = (Optional[annotation], Field(p.default, **info))
        offers = list(self.rules.offers.values())
        fields["backend"] = (Literal[tuple(self.backends)], Field(self.backends[0], title="Backend"))
        for name in RESOURCES:
            widest = self.rules.widest(name)
            spec = self.rules.resource_fields[name]
            fields[name] = (int, Field(offers[0].bounds[name].default, ge=widest.min, le=widest.max,
                                       title=spec.shown_name, description=_description("", spec.units)))
        fields["destination"] = (Optional[str], Field(None, title="Results go to", description=(
            "Empty for a new folder in the user's home, or a URL: "
            + ", ".join(k.value for k in self.descriptor.destinations))))
        rules = self.rules

        def apply_rules(cls, data, handler):
            evaluation = rules.evaluate(data)
            errors = evaluation.errors(partial=False)
            if errors:
                raise ValidationError.from_exception_data(cls.__name__, [
                    {"type": PydanticCustomError("job_form", "{message}", {"message": message}),
                     "loc": (name,), "input": _input(data, name)} for name, message in errors.items()])
            return handler(_checked_values(evaluation))

        model_name = "".join(part.capitalize() for part in self.id.replace("_", "-").split("-")) + "Request"
        return create_model(
            model_name, __config__=ConfigDict(extra="forbid", title=f"{self.name}: job request"),
            __validators__={"apply_rules": model_validator(mode="wrap")(apply_rules)}, **fields)

    def _request(self, checked: BaseModel) -> JobRequest:
        values = checked.model_dump(by_alias=True)
        parameters = {p.name: values[p.name] for p in self.descriptor.parameters if values[p.name] is not None}
        resources = ResourceRequest(**{name: values[name] for name in ("backend", *RESOURCES)})
        return JobRequest(app_id=self.id, parameters=parameters, resources=resources,
                          destination={"url": values["destination"]})


def _checked_values(evaluation: Evaluation) -> dict:
    values = {name: state.value for name, state in evaluation.fields.items()}
    values["destination"] = values["destination"].url
    return values


def _input(data, name: str):
    return data.get(name) if isinstance(data, dict) else data


def _description(help_text: str, units: str) -> Optional[str]:
    text = help_text + (f" (in {units})" if units else "")
    return text.strip() or None


def _argument(value, what: str) -> str:
    text = os.fspath(value)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ValueError(f"{what} must be a non-empty path without NUL characters.")
    return text
