/** The status page's access rules: read-only, loopback unless a token is set, and the token's ways in. */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import { locate } from '../src/cli/status.js';
import { loadConfig } from '../src/config/config.js';
import { escapeHtml, html } from '../src/ui/html.js';
import { isLoopback, startUi, TOKEN_COOKIE, uiToken } from '../src/ui/server.js';
import { tempDir, writeSiteYaml } from './support/spawn.js';

const TOKEN = 'a-long-enough-test-token-0123';
const quiet = { warn: () => {} };
let ui: Server | undefined;
afterEach(async () => {
  ui?.closeAllConnections();
  await new Promise((r) => (ui ? ui.close(r) : r(undefined)));
  ui = undefined;
});

async function siteWith(uiYaml: string) {
  const dir = await tempDir('hpcbot-ui-');
  writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
  const file = await writeSiteYaml(dir, 0);
  writeFileSync(file, readText(file).replace('ui:\n  port: 0\n', uiYaml));
  return loadConfig(file);
}
const readText = (f: string) => readFileSync(f, 'utf8');

async function serve(config: ReturnType<typeof loadConfig>) {
  ui = await startUi({
    located: await locate(config.source),
    host: '127.0.0.1',
    port: 0,
    token: uiToken(config),
    logger: quiet,
  });
  const addr = ui.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

test('a non-loopback ui.host without ui.token_file is refused with the key and its line', async () => {
  const config = await siteWith('ui:\n  host: 0.0.0.0\n  port: 0\n');
  expect(() => uiToken(config)).toThrow(
    `${config.source}:8: ui.host: 0.0.0.0 is not a loopback address: set ui.token_file, or use 127.0.0.1 and an SSH tunnel`,
  );
  expect([
    isLoopback('127.0.0.1'),
    isLoopback('::1'),
    isLoopback('localhost'),
    isLoopback('10.0.0.1'),
  ]).toEqual([true, true, true, false]);
});

test('without a token: read-only, scripts forbidden by the CSP', async () => {
  const base = await serve(await siteWith('ui:\n  port: 0\n'));
  const page = await fetch(`${base}/`);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
  expect(await page.text()).toContain('<h2>Health</h2>');
  expect((await fetch(`${base}/`, { method: 'POST' })).status).toBe(405);
  expect((await fetch(`${base}/nothing`)).status).toBe(404);
});

test('with ui.token_file: 401 without it; a bearer token, or ?token= which sets a cookie and drops it from the URL', async () => {
  const config = await siteWith('ui:\n  host: 0.0.0.0\n  port: 0\n  token_file: token\n');
  expect(uiToken(config)).toBe(TOKEN);
  const base = await serve(config);
  expect((await fetch(`${base}/`)).status).toBe(401);
  expect((await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
  expect((await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(
    200,
  );
  const signIn = await fetch(`${base}/job?dir=x&token=${TOKEN}`, { redirect: 'manual' });
  expect(signIn.status).toBe(303);
  expect(signIn.headers.get('location')).toBe('/job?dir=x');
  const cookie = signIn.headers.get('set-cookie')!;
  expect(cookie).toContain('HttpOnly');
  expect(cookie).toContain('SameSite=Strict');
  const withCookie = await fetch(`${base}/`, { headers: { cookie: cookie.split(';')[0]! } });
  expect(withCookie.status).toBe(200);
  expect((await fetch(`${base}/`, { headers: { cookie: `${TOKEN_COOKIE}=nope` } })).status).toBe(401);
});

test('html escapes every interpolated string, and only once', () => {
  const hostile = `<b onclick="x">'&'</b>`;
  expect(html`<td title="${hostile}">${hostile}</td>`.value).toBe(
    `<td title="${escapeHtml(hostile)}">&#60;b onclick=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/b&#62;</td>`,
  );
  expect(html`<p>${html`<i>${hostile}</i>`}</p>`.value).toBe(`<p><i>${escapeHtml(hostile)}</i></p>`);
});
