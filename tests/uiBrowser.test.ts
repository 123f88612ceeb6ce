/**
 * The status page in a real browser (Debian's chromium through puppeteer-core): after a real job
 * lifecycle on the local backend, on a PR whose title is an XSS attempt. Takes a screenshot: into the
 * test's temp dir, or with HPCBOT_UPDATE_SCREENSHOT=1 over docs/status-page.png (the README's picture).
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import os from 'node:os';
import type { Server } from 'node:http';
import path from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { locate } from '../src/cli/status.js';
import { startUi } from '../src/ui/server.js';
import type { JobData } from '../src/store/job.js';
import { stateOf, type Harness } from './support/botHarness.js';
import { ROOT } from './support/spawn.js';
import { runLifecycle } from './support/uiLifecycle.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const HOSTILE_TITLE = `<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> & "quotes"`;

let h: Harness;
let ui: Server;
let browser: Browser;
let base: string;
let jobRel: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/install-test-packages.sh`);
  ({ h, jobRel } = await runLifecycle(HOSTILE_TITLE));
  ui = await startUi({
    located: await locate(h.config.source),
    host: '127.0.0.1',
    port: 0,
    logger: h.deps.logger,
  });
  const addr = ui.address();
  base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/`;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  ui?.closeAllConnections();
  await new Promise((r) => (ui ? ui.close(r) : r(undefined)));
  await h?.stop();
});

/** Open `url` in a new page, collecting console errors, failed requests and page errors. */
async function visit(url: string) {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  const response = await page.goto(url, { waitUntil: 'networkidle0' });
  return { page, problems, status: response?.status() };
}

test('the overview loads with no console errors and shows the PR, its target cell and the job', async () => {
  const { page, problems, status } = await visit(base);
  expect(status).toBe(200);
  expect(problems).toEqual([]);
  expect(await page.title()).toBe('hpcbot test');
  const sections = await page.$$eval('section h2', (hs) => hs.map((h) => h.textContent));
  expect(sections).toEqual(
    expect.arrayContaining(['Health', 'Pull requests', 'Recently finished', 'Recent deliveries', 'Deploys']),
  );
  // The matrix: one PR row, one target column, the cell linking to the job.
  const header = await page.$$eval('#prs thead th', (ths) => ths.map((t) => t.textContent));
  expect(header).toEqual(['pull request', 'title', 'zen4/eessi-test']);
  const cell = await page.$eval('#prs tbody td.cell a', (a) => ({
    text: a.textContent,
    href: a.getAttribute('href'),
  }));
  expect(cell).toEqual({ text: 'SUCCESS', href: `job?dir=${encodeURIComponent(jobRel)}` });
  const refresh = await page.$eval('meta[http-equiv="refresh"]', (m) => m.getAttribute('content'));
  expect(refresh).toBe('10');

  const shot = process.env.HPCBOT_UPDATE_SCREENSHOT
    ? path.join(ROOT, 'docs', 'status-page.png')
    : path.join(os.tmpdir(), 'status-page.png');
  mkdirSync(path.dirname(shot), { recursive: true });
  await page.setViewport({ width: 1280, height: 900 });
  await page.screenshot({ path: shot, fullPage: true });
  expect(statSync(shot).size).toBeGreaterThan(10_000);
  await page.close();
});

test('a hostile PR title is shown as text: no element, no script ran', async () => {
  const { page, problems } = await visit(base);
  expect(problems).toEqual([]);
  expect(await page.$eval('#prs td.title', (td) => td.textContent)).toBe(HOSTILE_TITLE);
  expect(await page.$$('#prs td.title *')).toHaveLength(0);
  expect(await page.$$('body script, body img')).toHaveLength(0);
  expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
  await page.close();
});

test("following the cell opens the job's detail page with its history, rows, result file and log", async () => {
  const { page, problems } = await visit(base);
  await Promise.all([page.waitForNavigation(), page.click('#prs tbody td.cell a')]);
  expect(problems).toEqual([]);
  const state = await stateOf<JobData>(h.deps.jobdirs.resolve(jobRel));
  const history = await page.$$eval('#history tbody tr td:nth-child(2)', (tds) =>
    tds.map((t) => t.textContent),
  );
  expect(history).toEqual(state.history.map((t) => t.stage));
  const rows = await page.$$eval('#rows tbody tr', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
  );
  expect(rows).toEqual(state.data.rows.map((r) => [r.at, r.status, r.comment]));
  expect(rows.length).toBeGreaterThanOrEqual(2);
  expect(await page.$eval('#result pre', (p) => p.textContent)).toContain('status = SUCCESS');
  expect(await page.$eval('#log h2', (e) => e.textContent)).toMatch(/^Log tail/);
  expect(await page.$eval('#facts', (e) => e.textContent)).toContain(HOSTILE_TITLE);
  await page.close();
});

test('a job path outside jobdirs or not naming a job dir is not found', async () => {
  const [month, owner] = jobRel.split('/');
  for (const dir of [
    '../../etc',
    `${jobRel}/../../..`,
    `${jobRel}/work`,
    `${month}/${owner}/../${jobRel.split('/').slice(2).join('/')}`,
  ]) {
    const res = await fetch(`${base}job?dir=${encodeURIComponent(dir)}`);
    expect({ dir, status: res.status }).toEqual({ dir, status: 404 });
  }
});
