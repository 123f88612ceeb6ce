#!/usr/bin/env bash
# slurm-dev-cluster.sh — a real single-node Slurm (Debian bookworm packages) for development,
# tests and CI: munged, MariaDB, slurmdbd (so sacct works), slurmctld and slurmd, started by
# hand (no systemd, no cgroups). Run as root.
#
#   scripts/slurm-dev-cluster.sh start    install missing packages, write the configs, start
#                                         what is not running, wait until jobs can run
#   scripts/slurm-dev-cluster.sh stop     stop the daemons that `start` started (by PID file)
#   scripts/slurm-dev-cluster.sh status   one line per daemon; exit 0 only if all are up
#
# Files: /etc/slurm/slurm.conf and slurmdbd.conf (the default paths, so clients need no
# SLURM_CONF); state /var/lib/hpcbot-slurm; logs /var/log/hpcbot-slurm; our PID files
# /run/hpcbot-slurm. Ports: 6817 slurmctld, 6818 slurmd, 6819 slurmdbd (Slurm binds all
# addresses), MariaDB on 127.0.0.1:$HPCBOT_SLURM_DB_PORT (default 6820).
# A running job survives stop; slurmd takes it back on the next start.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

CLUSTER=hpcbot
PARTITION=debug
DB_PORT=${HPCBOT_SLURM_DB_PORT:-6820}
TIMEOUT=${HPCBOT_SLURM_TIMEOUT:-60} # seconds to wait for each step
STATE=/var/lib/hpcbot-slurm
LOG=/var/log/hpcbot-slurm
RUN=/run/hpcbot-slurm
MYSOCK=$RUN/mysql/mysqld.sock
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server slurm-wlm-torque)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd) # start order; stop is the reverse
T0=$(date +%s%N)

elapsed() { # seconds since $1 (default: script start), e.g. 4.2
  local ms=$((($(date +%s%N) - ${1:-$T0}) / 1000000))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
say() { printf '[slurm-dev-cluster %5ss] %s\n' "$(elapsed)" "$*"; }
die() {
  say "ERROR: $*" >&2
  exit 1
}
node_name() { hostname -s 2>/dev/null || uname -n; }

# ------------------------------------------------------------------ processes
exe_of() { # the binary a daemon's /proc/PID/exe points to
  case $1 in
    munged | mariadbd) echo "/usr/sbin/$1" ;;
    *) readlink -f "/usr/sbin/$1" ;; # slurm*: alternatives symlinks to *-wlm
  esac
}

pid_of() { # pid_of DAEMON: print the PID from our PID file if that process is alive
  local pid state exe
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]] || return 1 # a zombie waiting for PID 1 is gone
  if exe=$(readlink "/proc/$pid/exe" 2>/dev/null); then
    [[ ${exe% (deleted)} == "$(exe_of "$1")" ]] || return 1 # PID reused by something else
  else # not root: /proc/PID/exe is unreadable, compare the command name
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
  fi
  echo "$pid"
}

launch() { # launch DAEMON USER ARGS...: start a foreground daemon in the background
  local name=$1 user=$2
  shift 2
  rm -f "$RUN/$name.pid" # stale: start-stop-daemon would take any process with that PID for ours
  # --startas keeps argv[0] = /usr/sbin/NAME: Slurm tells slurmctld from a client by argv[0],
  # and started as slurmctld-wlm it segfaults on its first start against slurmdbd.
  say "starting $name"
  start-stop-daemon --start --background --make-pidfile --pidfile "$RUN/$name.pid" \
    --chuid "$user" --output "$LOG/$name.out" --startas "/usr/sbin/$name" -- "$@" 9>&-
}

wait_until() { # wait_until WHAT DAEMON CMD...: poll CMD until it succeeds
  local what=$1 daemon=$2 deadline=$(($(date +%s) + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ -n $daemon ]] && ! pid_of "$daemon" >/dev/null; then
      tail -n 20 "$LOG/$daemon.out" "$LOG/$daemon.log" >&2 2>/dev/null || true
      die "$daemon exited while waiting for: $what (logs in $LOG)"
    fi
    (($(date +%s) < deadline)) || die "timed out after ${TIMEOUT}s waiting for: $what (logs in $LOG)"
    sleep 0.1
  done
}

stop_daemon() {
  local pid i
  if ! pid=$(pid_of "$1"); then
    rm -f "$RUN/$1.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do # 30 s, then SIGKILL
    pid_of "$1" >/dev/null || break
    sleep 0.1
  done
  if pid_of "$1" >/dev/null; then
    say "$1 (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$1.pid"
  say "stopped $1 (pid $pid)"
}

# ------------------------------------------------------------------ install
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]} (log: $LOG/apt.log)"
  # Package scripts must not start services (we start our own, there is no systemd).
  local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  {
    apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >"$LOG/apt.log" 2>&1 || rc=$?
  if ((made_policy)); then
    rm -f "$policy"
    trap - EXIT
  fi
  if ((rc)); then
    tail -n 30 "$LOG/apt.log" >&2
    die "apt-get failed (rc $rc)"
  fi
  say "packages installed"
}

# ------------------------------------------------------------------ config
CONFIG_CHANGED=0
put_file() { # put_file PATH MODE < content: replace PATH only when the content differs
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  chmod "$2" "$tmp"
  if cmp -s "$tmp" "$1"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$1"
    CONFIG_CHANGED=1
    say "wrote $1"
  fi
}

write_configs() {
  local node hw cpus sockets cores threads mem
  node=$(node_name)
  hw=$(slurmd -C | head -n 1) # e.g. NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 ... RealMemory=24105
  field() { sed -nE "s/.* $1=([0-9]+).*/\1/p" <<<"$hw"; }
  cpus=$(field CPUs) sockets=$(field SocketsPerBoard) cores=$(field CoresPerSocket)
  threads=$(field ThreadsPerCore) mem=$(($(field RealMemory) * 9 / 10))
  mkdir -p /etc/slurm
  put_file /etc/slurm/slurm.conf 644 <<EOF
# Written by hpc-build-bot's scripts/slurm-dev-cluster.sh; edits are overwritten on start.
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.self.pid
SlurmdPidFile=$RUN/slurmd.self.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No systemd and no cgroups: follow job processes through /proc, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
# Start jobs at once: no batch delay, and a main scheduling pass every second (the default
# of 60 s left --begin jobs waiting up to 30 s for the backfill pass after their begin time).
SchedulerParameters=batch_sched_delay=0,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
KillWait=5
MinJobAge=120
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoreFlags=job_comment
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  put_file /etc/slurm/slurmdbd.conf 600 <<EOF
# Written by hpc-build-bot's scripts/slurm-dev-cluster.sh; edits are overwritten on start.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.self.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$STATE/db.pass")
StorageLoc=slurm_acct_db
EOF
}

# ------------------------------------------------------------------ daemons
munge_ok() { munge -n | unmunge; }
mysql_root() { mariadb --no-defaults --user=root --socket="$MYSOCK" "$@"; }
cluster_registered() { sacctmgr -n -P list cluster format=cluster | grep -x "$CLUSTER" >/dev/null; }
node_ready() { # ready for jobs; a drained or down node (e.g. after "Kill task failed") is resumed
  local state
  state=$(sinfo -h -n "$(node_name)" -o %T)
  [[ $state =~ ^(idle|mixed|allocated|completing)$ ]] && return 0
  [[ $state =~ ^(drained|draining|down)$ ]] && scontrol update nodename="$(node_name)" state=resume
  return 1
}
sacct_ok() { sacct -n -P -X -o JobID -S now-1minutes; }
scheduled_once() { # sdiag: the main scheduler has run at least one cycle
  sdiag | awk '/^Main schedule/ {m = 1} m && /Total cycles:/ {ok = $3 >= 1; exit} END {exit !ok}'
}

start_munged() {
  if pid_of munged >/dev/null; then return 0; fi
  if munge_ok >/dev/null 2>&1; then
    say "using the munged that already runs on this machine"
    return 0
  fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    (umask 077 && dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
  fi
  chown -R munge:munge /etc/munge
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  launch munged munge --foreground
  wait_until "munge credentials" munged munge_ok
}

start_mariadbd() {
  if ! pid_of mariadbd >/dev/null; then
    if [[ ! -d $STATE/mysql/mysql ]]; then
      install -d -o mysql -g mysql -m 750 "$STATE/mysql"
      mariadb-install-db --no-defaults --user=mysql --basedir=/usr --datadir="$STATE/mysql" --skip-test-db \
        >"$LOG/mariadb-install-db.log" 2>&1 || die "mariadb-install-db failed (see $LOG/mariadb-install-db.log)"
    fi
    install -d -o mysql -g mysql -m 755 "$RUN/mysql"
    # The innodb sizes only silence slurmdbd's "not recommended values" warning.
    launch mariadbd root --no-defaults --user=mysql --datadir="$STATE/mysql" --socket="$MYSOCK" \
      --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --log-error="$LOG/mariadb.log" \
      --innodb-buffer-pool-size=512M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
      --innodb-flush-log-at-trx-commit=2
  fi
  wait_until "MariaDB" mariadbd mysql_root -e 'SELECT 1'
  local pw
  pw=$(cat "$STATE/db.pass")
  mysql_root --batch <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
}

start_slurmdbd() {
  pid_of slurmdbd >/dev/null || launch slurmdbd root -D
  cluster_registered 2>/dev/null && return 0 # the usual case once set up: one sacctmgr call (0.4 s)
  wait_until "slurmdbd" slurmdbd sacctmgr -n list cluster
  if ! cluster_registered; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    say "registered cluster $CLUSTER in slurmdbd"
  fi
}

do_start() {
  [[ -r /etc/debian_version ]] || die "this script knows Debian's packages only"
  mkdir -p "$STATE/slurmctld" "$STATE/slurmd" "$LOG"
  install_packages
  local t_daemons ctld_started=0 d
  t_daemons=$(date +%s%N)
  [[ -s $STATE/db.pass ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.pass")
  write_configs
  if ((CONFIG_CHANGED)); then # restart what reads the configs
    for d in slurmd slurmctld slurmdbd; do stop_daemon "$d"; done
  fi
  start_munged
  start_mariadbd
  start_slurmdbd
  if ! pid_of slurmctld >/dev/null; then
    launch slurmctld root -D
    ctld_started=1
  fi
  wait_until "slurmctld" slurmctld scontrol ping
  pid_of slurmd >/dev/null || launch slurmd root -D -N "$(node_name)"
  wait_until "node $(node_name) idle" slurmd node_ready
  wait_until "sacct" slurmdbd sacct_ok
  # slurmctld's first scheduling pass comes ~3 s after it starts; a job submitted before
  # it waits that long, so wait here and keep the first test job as fast as the others.
  ((ctld_started)) && wait_until "first scheduling pass" slurmctld scheduled_once
  say "cluster up: $(elapsed "$t_daemons") s for the daemons, $(elapsed) s in all"
}

do_stop() {
  local i
  if pid_of slurmctld >/dev/null && [[ -n $(squeue -h -t running -o %i 2>/dev/null) ]]; then
    say "note: running jobs keep running; slurmd takes them back on the next start"
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]}"; done
  say "stopped"
}

do_status() {
  local d pid rc=0
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then
      echo "$d: running (pid $pid)"
    elif [[ $d == munged ]] && munge_ok >/dev/null 2>&1; then
      echo "munged: running (not started by this script)"
    else
      echo "$d: stopped"
      rc=3
    fi
  done
  if ((rc == 0)); then
    sinfo -o '%P %a %D %T %C' 2>&1 || true
  fi
  return $rc
}

case ${1:-} in
  start | stop)
    [[ $(id -u) == 0 ]] || die "run as root (sudo $0 $1)"
    mkdir -p "$RUN"
    exec 9>"$RUN/lock" # one start/stop at a time; parallel callers wait
    flock -w $((5 * TIMEOUT)) 9 || die "another $0 holds $RUN/lock"
    "do_$1"
    ;;
  status) do_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
