#!/usr/bin/env bash
# Installs the Debian packages NebulaHub needs, only those missing, only as root.
#   install-sysdeps.sh demo   python3 venv, node/npm (for configurable-http-proxy)
#   install-sysdeps.sh test   the above plus what the integration tests drive for real
set -euo pipefail
mode=${1:-demo}

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
[ ! -x /usr/bin/python3 ] && need+=(python3)
/usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
have_cmd node || need+=(nodejs)
have_cmd npm || need+=(npm)
have_cmd git || need+=(git)
if [ "$mode" = test ]; then
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  have_cmd ssh-keygen || need+=(openssh-client)
  have_cmd ip || need+=(iproute2)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  have_pkg procps || need+=(procps)
  # the job backends' real batch system and the jobs service's real database
  have_cmd slurmctld || need+=(slurm-wlm)
  have_cmd munged || need+=(munge)
  [ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
fi

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "NebulaHub needs these Debian packages: ${need[*]}" >&2
  echo "Run as root: apt-get install -y ${need[*]}" >&2
  [ "$mode" = test ] && exit 0   # unprivileged runs skip integration tests outside CI
  exit 1
fi
echo "Installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
