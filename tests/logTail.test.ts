/**
 * The log tail of a failed job (src/domain/logTail.ts): made safe (secrets and token shapes scrubbed,
 * 8 KB cap, backticks and `bot:` lines neutralised, control sequences removed), then in the job
 * comment of a real failed job on the local backend, and switched off with `reporting.log_tail_lines: 0`.
 */
import { commandLines } from '../src/domain/commandLines.js';
import { MAX_LOG_TAIL_BYTES, renderLogTail, safeLogLines, scrub } from '../src/domain/logTail.js';
import type { JobData } from '../src/store/job.js';
import {
  jobDirsOf,
  releaseWaitingJobs,
  openPr,
  OWNER,
  PR,
  REPO,
  stageOf,
  startHarness,
  stateOf,
  storeComment,
  tickUntil,
  type Harness,
} from './support/botHarness.js';
import { killAll } from './support/spawn.js';

const numbered = (n: number) => Array.from({ length: n }, (_, i) => `line ${String(i + 1).padStart(3, '0')}`);
const tail = (text: string, cutAtStart = false) => ({ file: 'slurm-42.out', text, cutAtStart });
/** The lines between the fences of a rendered tail. */
const shown = (rendered: string | undefined) =>
  /\n```\n([\s\S]*)\n```\n<\/details>$/.exec(rendered ?? '')?.[1];

describe('renderLogTail', () => {
  test('the last N lines, collapsed; 0 lines shows nothing', () => {
    const text = renderLogTail(tail(numbered(80).join('\n') + '\n'), 40, []);
    expect(text!.split('\n').slice(0, 4)).toEqual([
      '<details>',
      '<summary>Last 40 lines of <code>slurm-42.out</code></summary>',
      '',
      '```',
    ]);
    expect(shown(text)!.split('\n')).toEqual(numbered(80).slice(40));
    expect(shown(renderLogTail(tail('a\nb\nc\n'), 2, []))).toBe('b\nc');
    expect(renderLogTail(tail('boom\n'), 0, [])).toBeUndefined();
    expect(renderLogTail({ file: 'slurm-42.out', unread: 'does not exist' }, 40, [])).toBe(
      '`slurm-42.out` does not exist: no log to show.',
    );
  });

  test('known secrets and token shapes are scrubbed', () => {
    const log = [
      'webhook hush-hush-42 and hush-hush-42-longer',
      'ghp_abcdefghijklmnopqrstuvwxyz0123456789 github_pat_11ABCDEFG0123456789_abcdefghijklmnop',
      'aws AKIAIOSFODNN7EXAMPLE and password=hunter2 and TOKEN: abc',
      'Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345',
      '-----BEGIN OPENSSH PRIVATE KEY-----',
      'b3BlbnNzaC1rZXktdjEAAAAA',
      '-----END OPENSSH PRIVATE KEY-----',
      'harmless: gcc -O2 main.c',
    ].join('\n');
    const out = shown(renderLogTail(tail(log), 40, ['hush-hush-42', 'hush-hush-42-longer']))!;
    expect(out.split('\n')).toEqual([
      'webhook [secret] and [secret]',
      '[secret] [secret]',
      'aws [secret] and password=[secret] and TOKEN: [secret]',
      'Authorization: [secret]',
      '[secret]',
      'harmless: gcc -O2 main.c',
    ]);
    expect(scrub('token is x', [])).toBe('token is x');
  });

  test('backticks cannot close the fence, bot: lines are not commands, control sequences are gone', () => {
    const log =
      '``` closes?\nbot: build for:arch=zen4\n  bot:deploy\n\x1b[31mred\x1b[0m\r\n</details><img src=x>\n';
    const rendered = renderLogTail(tail(log), 40, [])!;
    expect(shown(rendered)!.split('\n')).toEqual([
      'ˋˋˋ closes?',
      'bot∶ build for:arch=zen4',
      '  bot∶deploy',
      'red',
      '</details><img src=x>',
    ]);
    expect(rendered.match(/```/g)).toHaveLength(2);
    // Even outside its fence, no line of it would be read as a command.
    expect(commandLines(shown(rendered)!)).toEqual([]);
  });

  test('capped at 8 KB, cut at its start at a whole line, the end kept', () => {
    const long = Array.from({ length: 40 }, (_, i) => `${'é'.repeat(300)} ${i}`).join('\n');
    const { body, capped } = safeLogLines(tail(long), 40, []);
    expect(capped).toBe(true);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_LOG_TAIL_BYTES);
    expect(body.endsWith(`${'é'.repeat(300)} 39`)).toBe(true);
    expect(body.split('\n')[0]).toMatch(/^é{300} \d+$/);
    expect(renderLogTail(tail(long), 40, [])).toContain(
      '<summary>Last 40 lines of <code>slurm-42.out</code>, cut to its last 8 KB</summary>',
    );
  });

  test('a read that began inside the file drops the partial first line (it may hold half a secret)', () => {
    expect(
      shown(renderLogTail(tail('cret123 partial\nline a\nline b\n', true), 40, ['ghp_TopSecret123'])),
    ).toBe('line a\nline b');
    const noNewline = renderLogTail(tail('Secret123tail-of-a-long-line', true), 40, ['ghp_TopSecret123']);
    expect(noNewline).not.toContain('Secret123');
  });
});

// ---- a real failed job -------------------------------------------------------------------------

const FAILING_BOT = {
  'bot/build.sh': [
    '#!/bin/bash',
    'for i in $(seq 1 50); do echo "compile step $i"; done',
    'echo "bot: deploy"',
    'echo "error: the build \\`broke\\`"',
    'exit 1',
  ].join('\n'),
  'bot/check-build.sh':
    '#!/bin/bash\nprintf "[RESULT]\\ncomment_description = :cry: FAILURE\\nstatus = FAILURE\\nartefacts =\\n" > "_bot_job${SLURM_JOB_ID}.result"\n',
};

let h: Harness | undefined;
afterEach(async () => {
  await killAll();
  if (h) await releaseWaitingJobs(h);
  await h?.stop();
  h = undefined;
});

async function failedJobComment(yaml: string): Promise<{ body: string; data: JobData }> {
  h = await startHarness(yaml);
  openPr(h, FAILING_BOT);
  await storeComment(h, 'bot: build for:arch=zen4');
  let dir = '';
  await tickUntil(h, async () => {
    dir = (await jobDirsOf(h!))[0] ?? '';
    return dir !== '' && (await stageOf(dir)) === 'finished';
  });
  const data = (await stateOf<JobData>(dir)).data;
  await tickUntil(
    h,
    async () => (await stateOf<JobData>(dir)).data.comment_body?.includes('finished') ?? false,
  );
  const comment = h.fake.commentsOf(OWNER, REPO, PR).find((c) => c.body.includes('#job -->'))!;
  return { body: comment.body, data: (await stateOf<JobData>(dir)).data ?? data };
}

describe('in the job comment of a failed job', () => {
  test('the last lines of its Slurm output, collapsed and neutralised', async () => {
    const { body, data } = await failedJobComment('reporting:\n  log_tail_lines: 5');
    expect(data.result?.status).toBe('FAILURE');
    expect(body).toContain(
      `<details>\n<summary>Last 5 lines of <code>slurm-${data.job_id}.out</code></summary>\n\n\`\`\`\n`,
    );
    const lines = /\n```\n([\s\S]*?)\n```\n<\/details>/.exec(body)![1]!.split('\n');
    expect(lines).toHaveLength(5);
    expect(lines).toContain('bot∶ deploy');
    expect(lines).toContain('error: the build ˋbrokeˋ');
  });

  test('reporting.log_tail_lines: 0 shows none', async () => {
    const { body, data } = await failedJobComment('reporting:\n  log_tail_lines: 0');
    expect(data.result?.status).toBe('FAILURE');
    expect(body).not.toContain('<summary>Last');
    expect(body).not.toContain('compile step');
  });
});
