"""A checked job request, what the job service stores and runs, and the error that refuses one.

A :class:`JobRequest` only comes out of :meth:`jobforms.app.App.validate`; it holds values that
passed every rule of the app when it was made. It is plain data (JSON with
``model_dump_json`` / ``model_validate_json``) so the service can keep it with the job;
:meth:`jobforms.app.App.command` checks it again before building the argv, so a stored request
that no longer fits its app (the admin changed the descriptor) is refused, not run.
"""
from __future__ import annotations

from typing import Union

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

from .destination import Destination
from .resources import RESOURCES, ResourceRequest

# strict members: a yes/no stays a bool and 10.0 stays a float through a JSON round trip
ParameterValue = Union[StrictBool, StrictInt, StrictFloat, StrictStr, list[Union[StrictInt, StrictFloat, StrictStr]]]


class JobRequestError(ValueError):
    """The values cannot make a job; :attr:`errors` maps each field to a sentence naming it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()) or "The job request is not valid.")
        self.errors = dict(errors)


class JobRequest(BaseModel):
    """What to run: the app, its parameters' values, the resources and where results go.

    ``parameters`` holds every parameter that has a value (hidden fields and empty optional ones
    are absent); a ``file`` parameter's value is the path the user gave, relative to one of their
    allowed folders: the service resolves it and passes the real path to ``App.command``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str
    parameters: dict[str, ParameterValue]
    resources: ResourceRequest
    destination: Destination

    def form_values(self, parameter_names) -> dict:
        """The flat form values this request came from (``App.validate`` of them gives it back)."""
        values = {name: self.parameters.get(name) for name in parameter_names}
        values.update({name: getattr(self.resources, name) for name in ("backend", *RESOURCES)})
        values["destination"] = self.destination.url
        return values
