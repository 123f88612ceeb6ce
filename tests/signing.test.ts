/** Signing and verifying with the real ssh-keygen and real ed25519 keys made for the test. */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SigningError, signFile, sigPath, verifyFile } from '../src/adapters/signing.js';

let dir: string;
let botKey: string;
let otherKey: string;
let allowed: string;

function keygen(file: string, comment: string, passphrase = ''): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', comment, '-f', file]);
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-sign-test-'));
  botKey = path.join(dir, 'bot_key');
  otherKey = path.join(dir, 'other_key');
  keygen(botKey, 'bot');
  keygen(otherKey, 'intruder');
  allowed = path.join(dir, 'allowed_signers');
  const pub = (await fs.readFile(`${botKey}.pub`, 'utf8')).trim();
  await fs.writeFile(allowed, `bot@hpcbot.test namespaces="test-instance" ${pub}\n`);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function artefact(name: string, content = 'tarball bytes\n'): Promise<string> {
  const file = path.join(dir, name);
  await fs.writeFile(file, content);
  return file;
}

test('sign then verify: ok, with the principal from allowed_signers', async () => {
  const file = await artefact('eessi-2023.06-software-linux-x86_64-amd-zen4-1700000000.tar.gz');
  const sig = await signFile(file, botKey, 'test-instance');
  expect(sig).toBe(`${file}.sig`);
  expect(await fs.readFile(sig, 'utf8')).toMatch(/^-----BEGIN SSH SIGNATURE-----/);
  // No temp files were left next to the artefact.
  expect((await fs.readdir(dir)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  await expect(verifyFile(file, sig, allowed, 'test-instance')).resolves.toEqual({
    ok: true,
    principal: 'bot@hpcbot.test',
  });
});

test('a tampered artefact fails', async () => {
  const file = await artefact('tampered.tar.gz');
  const sig = await signFile(file, botKey, 'test-instance');
  await fs.appendFile(file, 'one more byte');
  const r = await verifyFile(file, sig, allowed, 'test-instance');
  expect(r.ok).toBe(false);
  expect(r.principal).toBeUndefined();
  expect(r.error).toMatch(/does not verify/);
});

test('a wrong namespace fails', async () => {
  const file = await artefact('namespace.tar.gz');
  const sig = await signFile(file, botKey, 'another-instance');
  const r = await verifyFile(file, sig, allowed, 'another-instance');
  // allowed_signers restricts the bot key to namespace test-instance.
  expect(r.ok).toBe(false);
  const r2 = await verifyFile(file, sig, allowed, 'test-instance');
  expect(r2.ok).toBe(false);
  expect(r2.error).toMatch(/namespace/);
});

test('a key that is not in allowed_signers fails', async () => {
  const file = await artefact('intruder.tar.gz');
  const sig = await signFile(file, otherKey, 'test-instance');
  const r = await verifyFile(file, sig, allowed, 'test-instance');
  expect(r.ok).toBe(false);
  expect(r.error).toMatch(/not in .*allowed_signers/);
});

test('an existing .sig is refused unless overwrite is asked for; overwriting is idempotent', async () => {
  const file = await artefact('again.tar.gz');
  const first = await fs.readFile(await signFile(file, botKey, 'test-instance'));
  await expect(signFile(file, botKey, 'test-instance')).rejects.toThrow(SigningError);
  await fs.writeFile(sigPath(file), 'garbage');
  await signFile(file, botKey, 'test-instance', { overwrite: true });
  // ed25519 signatures are deterministic: a retry writes the same bytes.
  expect(await fs.readFile(sigPath(file))).toEqual(first);
  expect((await verifyFile(file, sigPath(file), allowed, 'test-instance')).ok).toBe(true);
});

test('a passphrase-protected key fails at once (no prompt), and the error does not hold the key', async () => {
  const locked = path.join(dir, 'locked_key');
  keygen(locked, 'locked', 'correct horse battery staple');
  const keyText = await fs.readFile(locked, 'utf8');
  const file = await artefact('locked.tar.gz');
  const err = await signFile(file, locked, 'test-instance').catch((e: unknown) => e as Error);
  expect(err).toBeInstanceOf(SigningError);
  const body = keyText.split('\n')[1]!;
  expect((err as Error).message).not.toContain(body);
  expect((err as Error).message).not.toContain('correct horse');
  await expect(fs.access(sigPath(file))).rejects.toThrow();
});

test('a missing signature is reported, not thrown', async () => {
  const file = await artefact('unsigned.tar.gz');
  const r = await verifyFile(file, sigPath(file), allowed, 'test-instance');
  expect(r).toEqual({ ok: false, error: expect.stringMatching(/does not exist/) });
});
