/** Reading files a build job (PR code) left behind: only plain files inside the work tree, via one handle. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { jest } from '@jest/globals';
import { closeSync, promises as fs, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { copyJobFile, openJobFile } from '../src/store/jobFile.js';
import { freshTreeDir, openTreeOutputSync, writeTreeFile } from '../src/store/workTree.js';

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

test('a fifo swapped in between the lstat and the open neither blocks the open nor is read', async () => {
  const name = 'x.result';
  await fs.writeFile(path.join(work, name), 'plain\n');
  const plainStat = await fs.lstat(path.join(work, name));
  await fs.rm(path.join(work, name));
  execFileSync('mkfifo', [path.join(work, name)]);
  // The job wins the race: the check saw a plain file, the open meets a fifo with no writer.
  const lstat = jest.spyOn(fs, 'lstat').mockImplementation(async () => plainStat);
  try {
    const opened = await Promise.race([
      openJobFile(work, name),
      new Promise((resolve) => setTimeout(() => resolve('blocked'), 5000)),
    ]);
    expect(opened).toMatchObject({ ok: false, problem: `${name} is not a regular file` });
  } finally {
    lstat.mockRestore();
  }
});

describe('writing into a work tree never follows a link', () => {
  let outside: string;
  beforeEach(async () => {
    outside = path.join(base, 'outside');
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, 'state.json'), '{"bot":"record"}\n');
  });

  test('a directory on the way that is a link is replaced by a real directory', async () => {
    await fs.symlink(outside, path.join(work, 'cfg'));
    await writeTreeFile(work, 'cfg/job.cfg', 'mine\n');
    expect((await fs.lstat(path.join(work, 'cfg'))).isDirectory()).toBe(true);
    expect(await fs.readFile(path.join(work, 'cfg', 'job.cfg'), 'utf8')).toBe('mine\n');
    expect(await fs.readdir(outside)).toEqual(['state.json']);
  });

  test('a file that is a link, or a directory, is replaced; the target is untouched', async () => {
    await fs.symlink(path.join(outside, 'state.json'), path.join(work, 'a'));
    await fs.mkdir(path.join(work, 'b'));
    await fs.writeFile(path.join(work, 'b', 'inner'), 'x');
    await writeTreeFile(work, 'a', 'A');
    await writeTreeFile(work, 'b', 'B');
    expect((await fs.lstat(path.join(work, 'a'))).isFile()).toBe(true);
    expect(await fs.readFile(path.join(work, 'a'), 'utf8')).toBe('A');
    expect(await fs.readFile(path.join(work, 'b'), 'utf8')).toBe('B');
    expect(await fs.readFile(path.join(outside, 'state.json'), 'utf8')).toBe('{"bot":"record"}\n');
    await expect(writeTreeFile(work, '../escape', 'x')).rejects.toThrow('is not a name inside a work tree');
    await expect(writeTreeFile(work, '/etc/x', 'x')).rejects.toThrow('is not a name inside a work tree');
  });

  test('freshTreeDir replaces a linked directory and never writes through it', async () => {
    await fs.symlink(outside, path.join(work, 'cfg'));
    const dir = await freshTreeDir(work, 'cfg');
    expect(dir).toBe(path.join(work, 'cfg'));
    expect(await fs.readdir(dir)).toEqual([]);
    expect(await fs.readdir(outside)).toEqual(['state.json']);
  });

  test.each<[string, (file: string) => Promise<unknown>]>([
    ['a symbolic link to a bot file', (f) => fs.symlink(path.join(outside, 'state.json'), f)],
    ['a hard link to a bot file', (f) => fs.link(path.join(outside, 'state.json'), f)],
    ['a fifo', async (f) => execFileSync('mkfifo', [f])],
    ['a directory', (f) => fs.mkdir(f)],
  ])('the output file: %s there is replaced by a new plain file', async (_what, plant) => {
    const file = path.join(work, 'slurm-1.out');
    await plant(file);
    const fd = openTreeOutputSync(work, 'slurm-1.out');
    try {
      writeSync(fd, 'job output\n');
    } finally {
      closeSync(fd);
    }
    const st = await fs.lstat(file);
    expect([st.isFile(), st.nlink]).toEqual([true, 1]);
    expect(await fs.readFile(file, 'utf8')).toBe('job output\n');
    expect(await fs.readFile(path.join(outside, 'state.json'), 'utf8')).toBe('{"bot":"record"}\n');
  });

  test('the output file: a plain file of the tree is appended to', async () => {
    await fs.writeFile(path.join(work, 'slurm-1.out'), 'first\n');
    const fd = openTreeOutputSync(work, 'slurm-1.out');
    writeSync(fd, 'second\n');
    closeSync(fd);
    expect(await fs.readFile(path.join(work, 'slurm-1.out'), 'utf8')).toBe('first\nsecond\n');
  });
});
