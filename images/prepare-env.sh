#!/bin/sh
# Bake NebulaHub's single-user environment into a VM image (run as root while building it).
#   prepare-env.sh [ENV_DIR] [NEBULAHUB_SOURCE]
# NEBULAHUB_SOURCE: a nebulahub wheel or source tree (for the plotting app on the VM).
set -eu
env_dir=${1:-/opt/nebulahub/env}
src=${2:-}
python3 -m venv "$env_dir"
"$env_dir/bin/pip" install --quiet "jupyterhub==6.1.1" "jupyterlab>=4.4,<5"
if [ -n "$src" ]; then
  "$env_dir/bin/pip" install --quiet "$src"
  # byte-compile the plotting stack and check that a fresh app process draws its first frame
  # without compiling anything (see panel_apps/prepare.py)
  "$env_dir/bin/python" -m panel_apps.prepare
fi
echo "Prepared $env_dir; set c.OpenNebulaSpawner.python_env = \"$env_dir\""
