#!/usr/bin/env bash
# Debian packages the test suite needs besides Slurm (scripts/slurm-dev-cluster.sh installs those).
# Run as root on a dev or CI machine; already-installed packages are skipped.
set -euo pipefail
PACKAGES=(zstd chromium awscli jq)
missing=()
for p in "${PACKAGES[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "install-test-packages: installing ${missing[*]}"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
