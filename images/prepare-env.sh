#!/bin/sh
# Bake NebulaHub's single-user environment into a VM image (run as root while building it).
#   prepare-env.sh [ENV_DIR] [extra pip args...]
set -eu
env_dir=${1:-/opt/nebulahub/env}
[ $# -gt 0 ] && shift
python3 -m venv "$env_dir"
"$env_dir/bin/pip" install --quiet "$@" "jupyterhub==6.1.1" "jupyterlab>=4.4,<5"
echo "Prepared $env_dir; set c.OpenNebulaSpawner.python_env = \"$env_dir\""
