#!/usr/bin/env bash
# Runs one job for the local backend, as the job user (backend.run_as, through sudo) or the bot's user.
#   local-job-runner.sh <job-id> <job-script>   run the job; cwd = the job's work tree
#   local-job-runner.sh --cancel <pgid>         stop a job's process group
# Two files in the work tree tell the bot what happened, so a poller that restarts later still knows:
#   .hpcbot-local-<id>.started   "<pid> <pgid>", created exclusively: a second start of the same job
#                                (after a poller crash) finds it and does nothing
#   .hpcbot-local-<id>.exit      the job script's exit status, written atomically when it ends
set -u
if [[ "${1:-}" == --cancel ]]; then
  [[ "${2:-}" =~ ^[0-9]+$ && "$2" -gt 1 ]] || { echo "usage: $0 --cancel <pgid>" >&2; exit 2; }
  kill -TERM -- "-$2" 2>/dev/null
  exit 0
fi
job_id=${1:?usage: local-job-runner.sh <job-id> <job-script>}
job_script=${2:?usage: local-job-runner.sh <job-id> <job-script>}
[[ "$job_id" =~ ^[0-9]+$ ]] || { echo "job id must be a number" >&2; exit 2; }
started=".hpcbot-local-${job_id}.started"
exit_file=".hpcbot-local-${job_id}.exit"

umask 007 # files the job makes stay readable (and removable) by the bot through the shared group
read -r -a stat </proc/$$/stat
if ! (set -o noclobber && printf '%s %s\n' "$$" "${stat[4]}" >"$started") 2>/dev/null; then
  exit 0 # already started once
fi
export SLURM_JOB_ID=$job_id HPCBOT_JOB_ID=$job_id HPCBOT_BACKEND=local
bash "$job_script"
rc=$?
printf '%s\n' "$rc" >"$exit_file.tmp.$$"
mv -f "$exit_file.tmp.$$" "$exit_file"
exit "$rc"
