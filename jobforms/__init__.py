"""Problem-oriented job forms: apps described by admins, compiled to checked forms and commands.

As in the JINR cloud service (2018) a researcher picks an app, fills its form (parameters,
resources, where results go) and submits; the job then lives through the states of
:mod:`jobforms.states`. This package is the layer the jobs service, the batch backends and the
Jobs page build on; it runs nothing itself.

* :func:`jobforms.loader.load_apps` ``(apps_dir, limits) -> (apps, problems)``: every
  ``<apps_dir>/<app-id>/app.yaml`` (format: :mod:`jobforms.descriptor`, published JSON Schema:
  ``jobforms/schema/app.schema.json``), checked; a broken one is a
  :class:`~jobforms.loader.Problem` (file, JSON path, sentence), the others keep working.
* :class:`jobforms.app.App`: ``form(values)``, ``check(values)``, ``validate(values) -> JobRequest``,
  ``model`` / ``request_schema()`` for the REST API, ``command(request, workdir=..., files=...)``.
* :class:`jobforms.request.JobRequest` (what the service stores) and
  :class:`~jobforms.request.JobRequestError` (``.errors``: field -> sentence).
* :mod:`jobforms.states`: ``JobState``, ``Transition``, ``JobHistory`` (illegal moves raise).
* ``jobforms/apps/``: the apps shipped with NebulaHub ("Hello test", "Long Josephson junctions
  simulation").

``backends/``, ``service/`` and ``page/`` (the jobs service, batch backends, the Jobs page) are
built on this API.
"""
