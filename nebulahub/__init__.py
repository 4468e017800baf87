"""The ``nebulahub`` command line (demo, reconcile, accounts, hostkeys, server-env, sample-data);
the product itself lives in ``machines`` (the machine layer), ``spawner`` (the JupyterHub
adapter), ``opennebula`` (the cloud client) and ``panel_apps`` (the plotting app)."""
