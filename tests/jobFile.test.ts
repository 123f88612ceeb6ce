/** Reading files a build job (PR code) left behind: only plain files inside the work tree, via one handle. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { copyJobFile, openJobFile } from '../src/store/jobFile.js';

let base: string;
let work: string;
let secret: string;

beforeEach(async () => {
  base = await fs.mkdtemp(path.join(os.tmpdir(), 'hpcbot-jobfile-'));
  work = path.join(base, 'work');
  await fs.mkdir(work);
  secret = path.join(base, 'secret');
  await fs.writeFile(secret, 'PRIVATE\n');
});

afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

test.each<[string, (name: string) => Promise<unknown>, string]>([
  ['a symbolic link', (n) => fs.symlink(secret, path.join(work, n)), 'x.tar.gz is a symbolic link'],
  ['a hard link', (n) => fs.link(secret, path.join(work, n)), 'x.tar.gz has 2 hard links'],
  [
    'a fifo (a plain open would block)',
    async (n) => execFileSync('mkfifo', [path.join(work, n)]),
    'x.tar.gz is not a regular file',
  ],
  ['a directory', (n) => fs.mkdir(path.join(work, n)), 'x.tar.gz is not a regular file'],
])('%s is refused, and copyJobFile copies nothing', async (_what, plant, problem) => {
  await plant('x.tar.gz');
  expect(await openJobFile(work, 'x.tar.gz')).toMatchObject({ ok: false, missing: false, problem });
  const dest = path.join(base, 'out');
  await fs.mkdir(dest);
  expect(await copyJobFile(work, 'x.tar.gz', path.join(dest, 'x.tar.gz'))).toEqual({ ok: false, problem });
  expect(await fs.readdir(dest)).toEqual([]);
});

test('names that leave the work tree, also through a symlinked directory, are refused', async () => {
  await fs.symlink(base, path.join(work, 'up'));
  for (const name of ['../secret', '/etc/passwd', 'up/secret']) {
    expect(await openJobFile(work, name)).toMatchObject({
      ok: false,
      problem: `${name} is not inside the job's work tree`,
    });
  }
  expect(await openJobFile(work, 'missing')).toMatchObject({ ok: false, missing: true });
});

test('a plain file is copied through its handle: same bytes, sha256 and mtime', async () => {
  const content = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
  await fs.writeFile(path.join(work, 'a.tar.gz'), content);
  const mtime = new Date('2026-01-02T03:04:05Z');
  await fs.utimes(path.join(work, 'a.tar.gz'), mtime, mtime);
  const dest = path.join(base, 'a.tar.gz');
  const r = await copyJobFile(work, 'a.tar.gz', dest);
  expect(r).toEqual({
    ok: true,
    file: dest,
    size: content.length,
    sha256: createHash('sha256').update(content).digest('hex'),
  });
  expect((await fs.readFile(dest)).equals(content)).toBe(true); // (toEqual on MBs is slow)
  expect((await fs.stat(dest)).mtime).toEqual(mtime);
  // A later change to the job's file does not reach the copy (it is not a link to it).
  await fs.writeFile(path.join(work, 'a.tar.gz'), 'changed');
  expect((await fs.readFile(dest)).equals(content)).toBe(true);
});
