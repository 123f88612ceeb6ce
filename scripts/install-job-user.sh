#!/usr/bin/env bash
# Sets up backend.run_as on a dev or CI machine, as root: installs Debian's sudo, creates the job
# user and writes the sudoers rule that lets the bot's user run the job commands as that user.
# Usage: scripts/install-job-user.sh [JOB_USER [BOT_USER]]   (defaults: hpcbot-job, the caller of sudo or root)
# Idempotent. Production sites should write the same rule with their own paths (see README, "backend.run_as").
set -euo pipefail
job_user=${1:-hpcbot-job}
bot_user=${2:-${SUDO_USER:-root}}
here=$(cd "$(dirname "$0")" && pwd)
runner="$here/local-job-runner.sh"

if [[ $(id -u) -ne 0 ]]; then
  echo "install-job-user.sh: run as root" >&2
  exit 1
fi
if ! command -v sudo >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null; }
fi
if ! id "$job_user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --user-group "$job_user"
fi
job_group=$(id -gn "$job_user")
# The bot creates each job's work tree with the job user's group, so it must be a member of it.
if [[ "$bot_user" != root ]]; then usermod -a -G "$job_group" "$bot_user"; fi

rule="/etc/sudoers.d/hpcbot-$job_user"
# The rule of the README ("backend.run_as"), with this machine's paths.
cmd() { command -v "$1" || echo "/usr/bin/$1"; }
tmp=$(mktemp)
cat >"$tmp" <<RULE
# hpc-build-bot: $bot_user starts, releases and cancels jobs as $job_user, and nothing else.
$bot_user ALL=($job_user) NOPASSWD: $(cmd sbatch), $(cmd scancel), $(cmd scontrol) release *, $(cmd qsub), $(cmd qrls), $(cmd qdel), $runner
RULE
visudo -cq -f "$tmp"
install -m 0440 "$tmp" "$rule"
rm -f "$tmp"
chmod 0755 "$runner"
echo "job user $job_user (group $job_group); sudoers rule $rule:"
grep -v '^#' "$rule"
