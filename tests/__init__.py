"""NebulaHub tests (a package so that helpers import as ``tests.nethosts``)."""
