#!/usr/bin/env bash
# Runs one job for the local backend and records its exit status atomically, so that a poller that
# restarts later still learns how the job ended.
# Usage: local-job-runner.sh <exit-status-file> <job-script>   (cwd = the job dir)
status_file=$1
job_script=$2
bash "$job_script"
rc=$?
printf '%s\n' "$rc" > "$status_file.tmp.$$"
mv -f "$status_file.tmp.$$" "$status_file"
exit "$rc"
