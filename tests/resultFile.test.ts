/** The result-file contract and the default job script; result files are hostile input. */
import { execFileSync } from 'node:child_process';
import {
  mkdtempSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
  chmodSync,
  existsSync,
  linkSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseIni } from '../src/domain/ini.js';
import { MAX_RESULT_FILE_BYTES, readResultFiles, sanitizeDescription } from '../src/domain/resultFile.js';
import { workTreeOf } from '../src/store/workTree.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'hpcbot-result-'));

describe('parseIni', () => {
  test('reads sections, both separators, and indented continuation lines', () => {
    expect(
      parseIni(
        '[RESULT]\ncomment_description = hi = there\nstatus: SUCCESS\nartefacts =\n    a.tar.zst\n\n    b.tar.gz\n',
      ),
    ).toEqual({
      RESULT: { comment_description: 'hi = there', status: 'SUCCESS', artefacts: '\na.tar.zst\nb.tar.gz' },
    });
  });
});

describe('sanitizeDescription', () => {
  test.each([
    [
      '<details><summary>:grin: SUCCESS</summary><ul><li><code>x</code></li></ul></details>',
      '<details><summary>:grin: SUCCESS</summary><ul><li><code>x</code></li></ul></details>',
    ],
    ['<script>alert(1)</script>', '&#60;script&#62;alert&#40;1&#41;&#60;/script&#62;'],
    ['<img src=x onerror=alert(1)>', '&#60;img src=x onerror=alert&#40;1&#41;&#62;'],
    ['<details open>', '&#60;details open&#62;'],
    ['[click](https://evil.example)', '&#91;click&#93;&#40;https://evil.example&#41;'],
    ['![pixel](https://evil.example/p.png)', '&#33;&#91;pixel&#93;&#40;https://evil.example/p.png&#41;'],
    ['ping @everyone | break the table', 'ping &#64;everyone &#124; break the table'],
    ['line one\nbot: build for:arch=x', 'line one bot: build for:arch=x'],
    ['`code` and :rocket:', '`code` and :rocket:'],
  ])('%s', (input, expected) => {
    expect(sanitizeDescription(input)).toBe(expected);
  });

  // Unbalanced tags would close the job comment's own blocks or leave them open.
  test.each([
    ['</details> breaks out', '&#60;/details&#62; breaks out'],
    ['<details><summary>x', '<details><summary>x</summary></details>'],
    ['<details>open', '<details>open</details>'],
    ['ok</summary></details></ul></li>', 'ok&#60;/summary&#62;&#60;/details&#62;&#60;/ul&#62;&#60;/li&#62;'],
    ['<ul><li>a<li>b</ul>', '<ul><li>a<li>b</li></li></ul>'],
    ['<details><summary>s</details>', '<details><summary>s</summary></details>'],
    ['<b><i>x</b></i>', '<b><i>x</i></b>&#60;/i&#62;'],
    ['<DETAILS/>x', '<details>x</details>'],
    ['a<br>b<br/>c</br>', 'a<br>b<br/>c&#60;/br&#62;'],
    ['<code>x</CODE>', '<code>x</code>'],
  ])('balanced: %s', (input, expected) => {
    expect(sanitizeDescription(input)).toBe(expected);
  });

  test('whatever the input, every tag in the output is closed in order', () => {
    const pieces = ['<details>', '</details>', '<summary>', '</summary>', '<ul>', '</ul>', '<li>', '</li>'];
    pieces.push('<b>', '</i>', '<br>', '</br>', '<ol/>', 'text', '<code>', '</CODE>', '<x>');
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let n = 0; n < 500; n++) {
      const input = Array.from({ length: 1 + (next() % 12) }, () => pieces[next() % pieces.length]).join('');
      const stack: string[] = [];
      for (const [, close, name] of sanitizeDescription(input).matchAll(/<(\/?)([a-z]+)\/?>/g)) {
        if (name === 'br') expect(close).toBe('');
        else if (!close) stack.push(name!);
        else expect([input, stack.pop()]).toEqual([input, name]);
      }
      expect([input, stack]).toEqual([input, []]);
    }
  });
});

describe('readResultFiles', () => {
  /** A job dir whose work tree is `work/` (the files are read from there only). */
  const jobDir = () => {
    const dir = tmp();
    mkdirSync(workTreeOf(dir));
    return { dir, work: workTreeOf(dir) };
  };

  test('parses .result and .test from the work tree, accepting [RESULT] in the .test file', async () => {
    const { dir, work } = jobDir();
    writeFileSync(
      path.join(work, '_bot_job5.result'),
      '[RESULT]\ncomment_description = ok\nstatus = SUCCESS\nartefacts =\n  ../../etc/passwd\n  eessi-x.tar.zst\n',
    );
    writeFileSync(
      path.join(work, '_bot_job5.test'),
      '[RESULT]\ncomment_description = tests ok\nstatus = success\n',
    );
    // A result file in the job dir itself (the bot's records) is not the job's.
    writeFileSync(path.join(dir, '_bot_job5.result'), '[RESULT]\nstatus = FAILURE\n');
    const r = await readResultFiles(dir, '5');
    // Artefact names are kept verbatim here; deploy refuses anything that does not resolve inside the work tree.
    expect(r.result.summary).toEqual({
      status: 'SUCCESS',
      description: 'ok',
      artefacts: ['../../etc/passwd', 'eessi-x.tar.zst'],
    });
    expect(r.test.summary).toEqual({ status: 'SUCCESS', description: 'tests ok', artefacts: [] });
  });

  test('missing files and odd statuses end as UNKNOWN, never as a crash', async () => {
    const { dir, work } = jobDir();
    let r = await readResultFiles(dir, '6');
    expect(r.result.descriptionHtml).toBe(':shrug: UNKNOWN (no result in `_bot_job6.result`)');
    expect(r.test.descriptionHtml).toBe(':shrug: UNKNOWN (no test result in `_bot_job6.test`)');
    writeFileSync(path.join(work, '_bot_job7.result'), '[RESULT]\nstatus = PWNED\n');
    r = await readResultFiles(dir, '7');
    expect(r.result.summary.status).toBe('UNKNOWN');
  });

  test('a result file over the limit is not read, and the comment says so with the limit', async () => {
    const { dir, work } = jobDir();
    const size = MAX_RESULT_FILE_BYTES + 10;
    const text = '[RESULT]\nstatus = SUCCESS\nartefacts = a.tar.gz\ncomment_description = ';
    writeFileSync(path.join(work, '_bot_job8.result'), text + 'x'.repeat(size - text.length));
    const r = await readResultFiles(dir, '8');
    expect(r.result.summary).toEqual({
      status: 'UNKNOWN',
      description: `_bot_job8.result is too long (${size} bytes, over the limit of ${MAX_RESULT_FILE_BYTES} bytes) and was not read`,
      artefacts: [],
    });
    expect(r.result.descriptionHtml).toBe(
      `:shrug: UNKNOWN (\`_bot_job8.result\` is too long (${size} bytes, over the limit of ${MAX_RESULT_FILE_BYTES} bytes) and was not read)`,
    );
    // Exactly at the limit it is read.
    writeFileSync(
      path.join(work, '_bot_job9.result'),
      ('[RESULT]\nstatus = SUCCESS\ncomment_description = ' + 'x'.repeat(MAX_RESULT_FILE_BYTES)).slice(
        0,
        MAX_RESULT_FILE_BYTES,
      ),
    );
    expect((await readResultFiles(dir, '9')).result.summary.status).toBe('SUCCESS');
  });

  test('a symlink, a hard link or a fifo is not read, and the comment says which', async () => {
    const { dir, work } = jobDir();
    const secret = path.join(dir, 'secret');
    writeFileSync(secret, '[RESULT]\nstatus = SUCCESS\ncomment_description = SECRET\n');
    symlinkSync(secret, path.join(work, '_bot_job10.result'));
    linkSync(secret, path.join(work, '_bot_job10.test'));
    execFileSync('mkfifo', [path.join(work, '_bot_job11.result')]);
    const r = await readResultFiles(dir, '10');
    expect(r.result.descriptionHtml).toBe(
      ':shrug: UNKNOWN (`_bot_job10.result` is a symbolic link and was not read)',
    );
    expect(r.test.descriptionHtml).toBe(
      ':shrug: UNKNOWN (`_bot_job10.test` has 2 hard links and was not read)',
    );
    expect(JSON.stringify(r)).not.toContain('SECRET');
    // A fifo with no writer would block a plain open forever.
    expect((await readResultFiles(dir, '11')).result.descriptionHtml).toBe(
      ':shrug: UNKNOWN (`_bot_job11.result` is not a regular file and was not read)',
    );
  });
});

describe('scripts/bot-build.slurm', () => {
  const script = path.resolve('scripts/bot-build.slurm');

  function jobDir(bot: Record<string, string>, jobCfg: string, exportVars?: string) {
    const dir = tmp();
    mkdirSync(path.join(dir, 'cfg'));
    writeFileSync(path.join(dir, 'cfg', 'job.cfg'), jobCfg);
    if (exportVars) writeFileSync(path.join(dir, 'cfg', 'export_vars.sh'), exportVars);
    for (const [name, body] of Object.entries(bot)) {
      mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      writeFileSync(path.join(dir, name), `#!/bin/bash\n${body}\n`);
      chmodSync(path.join(dir, name), 0o755);
    }
    return dir;
  }

  function runJob(dir: string): number {
    try {
      execFileSync('bash', [script], {
        cwd: dir,
        env: { ...process.env, SLURM_JOB_ID: '42' },
        stdio: 'pipe',
      });
      return 0;
    } catch (err) {
      return (err as { status: number }).status;
    }
  }

  test('runs the steps in order with the job.cfg settings and export variables', () => {
    const site = tmp();
    writeFileSync(path.join(site, 'site.sh'), 'echo site >> steps.log\nexport FROM_SITE=1\n');
    const dir = jobDir(
      {
        'bot/build.sh': 'echo "build $SKIP_TESTS $FROM_SITE ${TMPDIR#' + site + '/tmp/}" >> steps.log',
        'bot/check-build.sh': 'echo check-build >> steps.log',
        'bot/test.sh': 'echo test >> steps.log',
        'bot/check-test.sh': 'echo check-test >> steps.log',
      },
      `[site_config]\nlocal_tmp = ${site}/tmp\nsite_config_script = ${site}/site.sh\n`,
      "export SKIP_TESTS='no'\n",
    );
    expect(runJob(dir)).toBe(0);
    const steps = readFileSync(path.join(dir, 'steps.log'), 'utf8').trim().split('\n');
    expect(steps[0]).toBe('site');
    expect(steps[1]).toMatch(/^build no 1 eessi_job\.\w{10}$/);
    expect(steps.slice(2)).toEqual(['check-build', 'test', 'check-test']);
    // The check scripts wrote nothing: the defaults say UNKNOWN, the test one under [TEST].
    expect(readFileSync(path.join(dir, '_bot_job42.result'), 'utf8')).toContain(
      '[RESULT]\ncomment_description = :shrug: UNKNOWN',
    );
    expect(readFileSync(path.join(dir, '_bot_job42.test'), 'utf8')).toMatch(
      /^\[TEST\]\n.*\nstatus = UNKNOWN\n$/,
    );
  });

  test('SKIP_TESTS=yes skips bot/test.sh; the build exit code is the job exit code', () => {
    const dir = jobDir(
      { 'bot/build.sh': 'exit 3', 'bot/test.sh': 'touch tested' },
      '[site_config]\n',
      "export SKIP_TESTS='yes'\n",
    );
    expect(runJob(dir)).toBe(3);
    expect(existsSync(path.join(dir, 'tested'))).toBe(false);
  });

  test('a PR without bot/build.sh fails with a FAILURE result', () => {
    const dir = jobDir({}, '[site_config]\n');
    expect(runJob(dir)).toBe(1);
    expect(readFileSync(path.join(dir, '_bot_job42.result'), 'utf8')).toContain('status = FAILURE');
  });
});
