"""The Jobs page: run prepared apps from a form and follow the jobs, in the user's own server.

A Panel page served through jupyter-server-proxy at ``/user/<name>/nebulahub-jobs/`` (and a
JupyterLab launcher card), reachable from the hub's home page and Services menu. It talks only to
the jobs service (:mod:`jobforms.service`), with the server's own token, from the page's Python
side; the browser never holds a credential.

* :mod:`.client`: the service's REST API and event stream, from ``$NEBULAHUB_SERVICES``;
* :mod:`.feed`: one event follower per page process, shared by every open tab;
* :mod:`.catalogue`: the apps, by category, with icons and descriptions;
* :mod:`.fields`, :mod:`.form`: the form generated from the service's field descriptions,
  checked live, with saved sets, the quota and submit;
* :mod:`.jobs`: "My jobs": badges, reasons, cancel, log tail, results, "Plot results", run again;
* :mod:`.app`: the page (:class:`~.app.JobsPage`), :mod:`.launcher` and :mod:`.serverproxy`;
* :mod:`.text`: escaping of everything a user or a job wrote.
"""
