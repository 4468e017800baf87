"""The product's layers: dependencies point one way, no import cycles, every setting documented.

JupyterHub adapter (``spawner``) and the command line (``nebulahub``) -> machine layer
(``machines``) -> cloud client (``opennebula``); the plotting app (``panel_apps``) stands alone.
Users' Dask clusters (``dask_clusters``) run in users' servers, beside the plotting app that uses
them: they ask the batch systems about their workers' jobs through the batch backends
(``jobforms.backends``, themselves on the machine layer's hosts) and run commands through the
machine layer's hosts; never through the spawner, the hub, the jobs service or the Jobs page.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("machines", "spawner", "opennebula", "panel_apps", "jobforms", "nebulahub",
            "dask_clusters")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (PROJECT / pkg).rglob("*.py"):
            if "remote" in path.parts:  # programs sent to machines, not imported
                continue
            mods[module_name(path)] = path
    return mods


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Product modules ``name`` imports anywhere in its file (top level, functions, and
    TYPE_CHECKING blocks alike: a cycle through a type hint is still a cycle of design)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import mod" depends on pkg.mod; "from pkg import name" on pkg
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs + ([base] if len(subs) < len(node.names) else [])
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = product_modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_no_import_cycles_anywhere_in_the_product(graph):
    """Tarjan's strongly connected components: any component of two or more is a cycle."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


@pytest.mark.parametrize("layer, forbidden", [
    ("machines", ("spawner", "nebulahub", "panel_apps", "jobforms", "jupyterhub", "dask_clusters")),
    ("opennebula", ("machines", "spawner", "nebulahub", "panel_apps", "jobforms", "jupyterhub",
                    "dask_clusters")),
    ("panel_apps", ("machines", "spawner", "nebulahub", "opennebula", "jupyterhub")),
    ("spawner", ("nebulahub", "panel_apps", "dask_clusters")),
    ("jobforms", ("dask_clusters",)),
    ("dask_clusters", ("spawner", "nebulahub", "panel_apps", "opennebula", "jupyterhub")),
])
def test_dependencies_point_one_way(layer, forbidden):
    mods = product_modules()
    bad = []
    for name, path in mods.items():
        if name.split(".")[0] != layer:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            roots = []
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                roots = [node.module.split(".")[0]]
            bad += [f"{name} imports {r}" for r in roots if r in forbidden]
    assert bad == []


def test_dask_clusters_take_only_the_batch_backends_from_the_jobs_layer(graph):
    """The watch asks squeue / condor_q through ``jobforms.backends`` (the batch systems' status,
    on the machine layer's hosts): that is the only part of ``jobforms`` a Dask cluster may use."""
    taken = {(name, dep) for name, deps in graph.items() if name.split(".")[0] == "dask_clusters"
             for dep in deps if dep.split(".")[0] == "jobforms"}
    assert taken, "the dask_clusters modules are in the graph"
    wrong = sorted(f"{name} imports {dep}" for name, dep in taken
                   if not (dep == "jobforms.backends" or dep.startswith("jobforms.backends.")))
    assert wrong == []
    machines = {dep for name, deps in graph.items() if name.split(".")[0] == "dask_clusters"
                for dep in deps if dep.split(".")[0] == "machines"}
    assert machines == {"machines.hosts"}, machines   # the user's own host runs the commands


def test_a_users_dask_cluster_loads_nothing_of_the_hub_the_spawner_or_the_jobs_service():
    """What a user's server imports for a SLURM or HTCondor cluster and its watch, in a fresh
    interpreter (imports at run time included: the batch backends are imported when asked for)."""
    program = """
import json, sys
import dask_clusters, dask_clusters.base, dask_clusters.watch, dask_clusters.notebook, dask_clusters.reaper
from dask_clusters import load_config, manager_class
for backend in ("slurm", "htcondor"):
    manager = manager_class(backend)(load_config(path="", backend=backend))
    assert manager.batch_backend() is not None
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=120, cwd=str(PROJECT), env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "jobforms.backends.slurm" in loaded and "machines.hosts" in loaded
    banned = ("jupyterhub", "spawner", "nebulahub", "panel_apps", "jobforms.service",
              "jobforms.page", "jobforms.app", "jobforms.form")
    assert [m for m in loaded if any(m == b or m.startswith(b + ".") for b in banned)] == []


def test_every_provider_and_machine_setting_shows_in_jupyterhub_help_all():
    out = subprocess.run([sys.executable, "-m", "jupyterhub", "--help-all"],
                         capture_output=True, text=True, timeout=120, cwd="/").stdout
    for setting in ("--OpenNebulaSpawner.provider", "--OpenNebulaProvider.endpoint",
                    "--OpenNebulaProvider.pool_max_age", "--SshProvider.username_template",
                    "--SshProvider.user_host_allow", "--LocalProvider.system_user_prefix",
                    "--MachineAccess.jump_host", "--MachineAccess.host_key_dir",
                    "--MachineAccess.crypt_key_file", "--JobsService.backends",
                    "--JobsService.max_vms", "--SlurmBackend.exec_prefix",
                    "--HTCondorBackend.limits", "--CloudBackend.python_env", "--CloudBackend.pool",
                    "--OpenNebulaSpawner.service_urls"):
        assert setting in out, setting
