/**
 * A PR whose build script attacks the bot from inside its job, while still building a good artefact.
 * Each attempt is written to `attack.txt` in the job's work tree as `<name>: denied` or `<name>: LEAKED <detail>`.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import { createPrRepo, PASSING_BOT, type PrRepo } from './prRepo.js';

export interface Secrets {
  dir: string;
  webhookSecret: string;
  appKey: string;
  signingKey: string;
  /** A value that is in the poller's environment and must not be in any environ a job can read. */
  envMarker: string;
}

/**
 * Secrets outside jobdirs, files mode 600, in a directory the job user CAN enter and list (mode 755,
 * and so is every directory above it): only the files' own modes keep a job out, so a denied read
 * proves the bot's placement and modes, not a closed parent. `config check` accepts this placement.
 */
export function makeSecrets(root: string): Secrets {
  chmodSync(root, 0o755);
  const dir = path.join(root, 'secrets');
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  const webhookSecret = path.join(dir, 'webhook-secret');
  writeFileSync(webhookSecret, 'whsec-0123456789abcdef\n', { mode: 0o600 });
  const appKey = path.join(dir, 'app.private-key.pem');
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  writeFileSync(appKey, privateKey, { mode: 0o600 });
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
export function hostileBot(s: Secrets, probeOnly = false, botPid = process.pid): Record<string, string> {
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
# The bot's own process (here the test process, which runs the poller's tick): its environ is readable
# only by its uid (and root), so this read is denied exactly when the job runs as someone else.
attempt read-poller-environ cat /proc/${botPid}/environ
attempt find-marker-in-any-environ grep -qs ${s.envMarker} /proc/[0-9]*/environ
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

/**
 * createPrRepo, then the PR's head also commits these symbolic links (name → target), as a hostile PR
 * can: git checks them out as links.
 */
export function createPrRepoWithLinks(
  gitRoot: string,
  owner: string,
  repo: string,
  number: number,
  files: Record<string, string>,
  links: Record<string, string>,
): PrRepo {
  const made = createPrRepo(gitRoot, owner, repo, number, files);
  const work = mkdtempSync(path.join(os.tmpdir(), 'hpcbot-prlinks-'));
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: 'Hostile',
    GIT_AUTHOR_EMAIL: 'hostile@example.com',
    GIT_COMMITTER_NAME: 'Hostile',
    GIT_COMMITTER_EMAIL: 'hostile@example.com',
  };
  const git = (...args: string[]) => execFileSync('git', args, { cwd: work, env, encoding: 'utf8' }).trim();
  git('init', '--quiet');
  git('fetch', '--quiet', made.bare, `refs/pull/${number}/head`);
  git('checkout', '--quiet', 'FETCH_HEAD');
  for (const [name, target] of Object.entries(links)) {
    mkdirSync(path.dirname(path.join(work, name)), { recursive: true });
    symlinkSync(target, path.join(work, name));
  }
  git('add', '-A');
  git('commit', '--quiet', '-m', 'links');
  git('push', '--quiet', '--force', made.bare, `HEAD:refs/pull/${number}/head`);
  const headSha = git('rev-parse', 'HEAD');
  rmSync(work, { recursive: true, force: true });
  return { ...made, headSha };
}
