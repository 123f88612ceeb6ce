/** `hpcbot verify` as a real child process, on artefacts signed with a real ssh-keygen key. */
import { execFile, execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JobData } from '../src/store/job.js';
import { buildProvenance, sha256File, writeProvenance } from '../src/domain/provenance.js';
import { signFile } from '../src/adapters/signing.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Run `node --import tsx src/cli/main.ts <args>` to completion (an argument array, no shell). */
function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'main.ts'), ...args],
      { cwd: ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const NS = 'verify-bot';

/** `hpcbot verify ARTEFACT --allowed-signers F --provenance P --namespace NS`. */
function verifyWithProvenance(artefact: string, provenance: string) {
  return runCli([
    'verify',
    artefact,
    '--allowed-signers',
    allowed,
    '--provenance',
    provenance,
    '--namespace',
    NS,
  ]);
}
let dir: string;
let key: string;
let allowed: string;

const job: JobData = {
  pr: { owner: 'example', repo: 'stack', number: 17, installation_id: null },
  instance: NS,
  target: {
    nodeType: 'zen4-node',
    repoId: 'eessi.io-2023.06-software',
    os: 'linux',
    onArch: 'x86_64/amd/zen4',
    forArch: 'x86_64/amd/zen4',
    forAccel: 'nvidia/cc90',
    slurmParams: [],
  },
  exportVariables: [],
  head_sha: '1111111111111111111111111111111111111111',
  base_sha: '2222222222222222222222222222222222222222',
  merge_sha: '3333333333333333333333333333333333333333',
  backend: 'slurm',
  submit_id: 'hpcbot-abc',
  job_id: '4242',
  started_at: '2025-01-02T03:04:05.000Z',
  finished_at: '2025-01-02T04:05:06.000Z',
  rows: [],
};

/** A signed artefact with a signed provenance, in its own directory. */
async function signedArtefact(
  name: string,
  namespace = NS,
): Promise<{ artefact: string; provenance: string }> {
  const d = await fs.mkdtemp(path.join(dir, 'a-'));
  const artefact = path.join(d, name);
  await fs.writeFile(artefact, `contents of ${name}\n`);
  await signFile(artefact, key, namespace);
  const provenance = await writeProvenance(
    artefact,
    buildProvenance({ artefact: { name, sha256: await sha256File(artefact) }, job }),
  );
  await signFile(provenance, key, namespace);
  return { artefact, provenance };
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-verify-test-'));
  key = path.join(dir, 'bot_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bot', '-f', key]);
  allowed = path.join(dir, 'allowed_signers');
  await fs.writeFile(allowed, `builder@site ${(await fs.readFile(`${key}.pub`, 'utf8')).trim()}\n`);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

test('a signed artefact with its provenance verifies and the builder is printed', async () => {
  const { artefact, provenance } = await signedArtefact(
    'eessi-2023.06-software-linux-x86_64-amd-zen4-1.tar.zst',
  );
  const r = await verifyWithProvenance(artefact, provenance);
  expect(r.stderr).not.toMatch(/problem/);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^OK: /);
  expect(r.stdout).toContain(`sha256:       ${await sha256File(artefact)}`);
  expect(r.stdout).toContain(`signed by:    builder@site (namespace ${NS})`);
  expect(r.stdout).toContain(`built by:     hpcbot instance ${NS} (builder hpcbot:${NS})`);
  expect(r.stdout).toContain('repository:   example/stack');
  expect(r.stdout).toContain('pull request: #17');
  expect(r.stdout).toContain(`head sha:     ${job.head_sha}`);
  expect(r.stdout).toContain(`merge sha:    ${job.merge_sha}`);
  expect(r.stdout).toContain('node type:    zen4-node');
  expect(r.stdout).toContain('target:       x86_64/amd/zen4 + nvidia/cc90, repo eessi.io-2023.06-software');
  expect(r.stdout).toContain('job:          4242 (slurm)');
});

test('the provenance next to the artefact and its namespace are found without options', async () => {
  const { artefact } = await signedArtefact('eessi-2023.06-compat-linux-x86_64-2.tar.gz');
  const r = await runCli(['verify', artefact, '--allowed-signers', allowed]);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/note: namespace "verify-bot" taken from the provenance/);
});

test('a tampered artefact fails: signature and provenance digest both mismatch', async () => {
  const { artefact, provenance } = await signedArtefact('eessi-2023.06-software-linux-aarch64-3.tar.gz');
  await fs.appendFile(artefact, 'malicious payload');
  const r = await verifyWithProvenance(artefact, provenance);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^FAILED: /);
  expect(r.stderr).toMatch(/problem: artefact signature: .*does not verify/);
  expect(r.stderr).toMatch(/problem: provenance is about another file/);
  expect(r.stderr).toMatch(/NOT verified/);
});

test('a wrong namespace fails', async () => {
  const { artefact, provenance } = await signedArtefact(
    'eessi-2023.06-software-linux-x86_64-4.tar.gz',
    'another-bot',
  );
  const r = await verifyWithProvenance(artefact, provenance);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/problem: artefact signature: .*namespace/);
  expect(r.stderr).toMatch(/problem: provenance signature: .*namespace/);
});

test('a genuine provenance of another artefact does not vouch for this one', async () => {
  const a = await signedArtefact('eessi-2023.06-software-linux-x86_64-5.tar.gz');
  const b = await signedArtefact('eessi-2023.06-software-linux-x86_64-6.tar.gz');
  const r = await verifyWithProvenance(a.artefact, b.provenance);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(
    /provenance is about another file: its subject is eessi-2023.06-software-linux-x86_64-6.tar.gz/,
  );
});
