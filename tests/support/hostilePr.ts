/**
 * A PR whose build script attacks the bot from inside its job, while still building a good artefact.
 * Each attempt is written to `attack.txt` in the job's work tree as `<name>: denied` or `<name>: LEAKED <detail>`.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { PASSING_BOT } from './prRepo.js';

export interface Secrets {
  dir: string;
  webhookSecret: string;
  appKey: string;
  signingKey: string;
  /** A value that is in the poller's environment and must not be in any environ a job can read. */
  envMarker: string;
}

/** Secrets where a site keeps them: a mode-700 directory outside jobdirs, files mode 600. */
export function makeSecrets(root: string): Secrets {
  const dir = path.join(root, 'secrets');
  mkdirSync(dir, { mode: 0o700 });
  const webhookSecret = path.join(dir, 'webhook-secret');
  writeFileSync(webhookSecret, 'whsec-0123456789abcdef\n', { mode: 0o600 });
  const appKey = path.join(dir, 'app.private-key.pem');
  writeFileSync(
    appKey,
    '-----BEGIN RSA PRIVATE KEY-----\nnot-a-real-app-key\n-----END RSA PRIVATE KEY-----\n',
    {
      mode: 0o600,
    },
  );
  const signingKey = path.join(dir, 'signing-key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hpcbot@test', '-f', signingKey]);
  chmodSync(signingKey, 0o600);
  return { dir, webhookSecret, appKey, signingKey, envMarker: `envmarker-${process.pid}-${Date.now()}` };
}

/** Site.yaml lines that use the secrets. */
export function secretsYaml(s: Secrets): string {
  return [
    'deploy:',
    '  policy: all',
    '  uploader:',
    '    kind: directory',
    '    directory: staging',
    '  signing:',
    `    key_file: ${s.signingKey}`,
  ].join('\n');
}

/**
 * With `probeOnly` the writes are only asked about (`test -w`), for a run where they would succeed and
 * wreck the bot's own records (the default without run_as); otherwise they are really tried.
 */
export function hostileBot(s: Secrets, probeOnly = false): Record<string, string> {
  const writes = probeOnly
    ? `write_to() { if [[ -e $1 ]]; then test -w "$1"; else test -w "$(dirname "$1")"; fi; }
append_to() { test -w "$1"; }
make_dir() { test -w "$(dirname "$1")"; }
move() { test -w "$(dirname "$1")"; }`
    : `write_to() { echo forged >"$1"; }
append_to() { : >>"$1"; }
make_dir() { mkdir "$1"; }
move() { mv "$1" "$2"; }`;
  const build = `#!/bin/bash
report=$PWD/attack.txt
: >"$report"
outcome() { if [[ $2 == 0 ]]; then echo "$1: LEAKED $3" >>"$report"; else echo "$1: denied" >>"$report"; fi; }
attempt() { local name=$1; shift; "$@" >/dev/null 2>&1; outcome "$name" $? "$*"; }
${writes}
jobdirs=$(cd ../../../../../../../../.. && pwd)
mine=$(cd .. && pwd)

attempt read-webhook-secret cat ${s.webhookSecret}
attempt read-app-key cat ${s.appKey}
attempt read-signing-key cat ${s.signingKey}
attempt list-secrets-dir ls ${s.dir}
attempt read-poller-environ grep -qs ${s.envMarker} /proc/[0-9]*/environ
event_parent=$(cd ../../../../.. && pwd)
attempt forge-event-dir make_dir "$event_parent/event_forged"
attempt forge-queue-entry write_to "$jobdirs/queue/forged"
attempt edit-own-state write_to "$mine/state.json"
attempt replace-own-state move "$mine/state.json" "$mine/state.old"
attempt edit-own-job-json write_to "$mine/job.json"
for f in $(find "$jobdirs/uploads" -type f 2>/dev/null); do attempt edit-upload-log append_to "$f"; done
attempt read-dry-run-store ls "$jobdirs/dry-run"
# Everything else under jobdirs: no directory may take a new file, no file may be opened for writing.
while IFS= read -r -d '' d; do attempt "plant-in $d" write_to "$d/.planted"; done < <(find "$jobdirs" -path "$PWD" -prune -o -type d -print0 2>/dev/null)
while IFS= read -r -d '' f; do attempt "write $f" append_to "$f"; done < <(find "$jobdirs" -path "$PWD" -prune -o -type f -print0 2>/dev/null)
# The bot's process environment, HOME and agents must not reach the job.
env >job-env.txt

# Artefacts that point at secrets: a symlink, a hard link (the kernel should refuse it), and a hard
# link to a file of our own outside the tree (the bot must refuse to read through it).
ln -s ${s.signingKey} leak-sym.tar.gz
attempt hardlink-secret ln ${s.webhookSecret} leak-hard.tar.gz
own=$(mktemp /tmp/hpcbot-job-own.XXXXXX); echo "outside the tree" >"$own"
ln "$own" leak-hard2.tar.gz
tar czf good-${process.pid}.tar.gz cfg/job.cfg
exit 0
`;
  return {
    ...PASSING_BOT,
    'bot/build.sh': build,
    'bot/check-build.sh': [
      '#!/bin/bash',
      'printf "[RESULT]\\ncomment_description = :grin: SUCCESS\\nstatus = SUCCESS\\nartefacts =\\n    good-' +
        process.pid +
        '.tar.gz\\n    leak-sym.tar.gz\\n    leak-hard.tar.gz\\n    leak-hard2.tar.gz\\n" > "_bot_job${SLURM_JOB_ID}.result"',
    ].join('\n'),
  };
}
