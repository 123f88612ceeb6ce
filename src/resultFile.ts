/**
 * Reading `_bot_job<ID>.result` and `_bot_job<ID>.test`, the EESSI job contract:
 *
 *   [RESULT]                         ([TEST] for .test; [RESULT] is accepted there too)
 *   comment_description = <one line of HTML>
 *   status = SUCCESS | FAILURE | UNKNOWN
 *   artefacts =
 *       eessi-2023.06-software-linux-x86_64-amd-zen4-1700000000.tar.zst
 *
 * These files are written by scripts from the PR: everything in them is hostile. The description is
 * reduced to a safe subset of HTML (details, summary, lists, code, emphasis, line breaks) and
 * markdown (code spans, emoji); anything else is escaped. Files are read up to a size limit.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseIni, type IniSections } from './ini.js';
import type { ResultSummary } from './job.js';

export const MAX_RESULT_FILE_BYTES = 64 * 1024;
const MAX_DESCRIPTION_CHARS = 4000;
const MAX_ARTEFACTS = 100;

const SAFE_TAGS = new Set([
  'details',
  'summary',
  'ul',
  'ol',
  'li',
  'code',
  'b',
  'strong',
  'i',
  'em',
  'br',
  'sub',
  'sup',
]);

/** Keep attribute-free safe tags; escape everything else that HTML or markdown would interpret. */
export function sanitizeDescription(input: string): string {
  const text = input.replace(/[\r\n]+/g, ' ').slice(0, MAX_DESCRIPTION_CHARS);
  let out = '';
  let i = 0;
  while (i < text.length) {
    const tag = /^<(\/?)([a-z]+)\s*(\/?)>/i.exec(text.slice(i));
    if (tag && SAFE_TAGS.has(tag[2]!.toLowerCase())) {
      out += `<${tag[1]}${tag[2]!.toLowerCase()}${tag[3] ? '/' : ''}>`;
      i += tag[0].length;
      continue;
    }
    out += escapeChar(text[i]!);
    i++;
  }
  return out;
}

function escapeChar(c: string): string {
  // `&` `<` `>` `"` for HTML; `[ ] ( ) ! * _ ~ # |` for markdown links, images, emphasis, headings and
  // table cells; `@` so no one gets mentioned. Backticks (code spans) and `:` (emoji) stay.
  return /[&<>"'[\]()!*_~#|@\\]/.test(c) ? `&#${c.charCodeAt(0)};` : c;
}

export interface ParsedResult {
  summary: ResultSummary;
  /** Safe to put into a table cell. */
  descriptionHtml: string;
}

const STATUSES = new Set(['SUCCESS', 'FAILURE', 'UNKNOWN']);

export function interpretResult(
  sections: IniSections | undefined,
  kind: 'result' | 'test',
  fileName: string,
): ParsedResult {
  const section = kind === 'test' ? (sections?.TEST ?? sections?.RESULT) : sections?.RESULT;
  if (!section) {
    const what = kind === 'test' ? 'test result' : 'result';
    return {
      summary: { status: 'UNKNOWN', description: '', artefacts: [] },
      descriptionHtml: `:shrug: UNKNOWN (no ${what} in ${codeName(fileName)})`,
    };
  }
  const rawStatus = (section.status ?? '').trim().toUpperCase();
  const status = (STATUSES.has(rawStatus) ? rawStatus : 'UNKNOWN') as ResultSummary['status'];
  const description = section.comment_description ?? '';
  const artefacts = (section.artefacts ?? '')
    .split('\n')
    .map((a) => a.trim())
    .filter(Boolean)
    .slice(0, MAX_ARTEFACTS);
  return {
    summary: { status, description, artefacts },
    descriptionHtml: description ? sanitizeDescription(description) : `${status} (no description)`,
  };
}

function codeName(name: string): string {
  return `\`${name.replace(/`/g, '')}\``;
}

async function readLimited(file: string): Promise<string | undefined> {
  let handle;
  try {
    const st = await fs.lstat(file);
    if (!st.isFile()) return undefined; // symlinks, devices and fifos are not results
    handle = await fs.open(file, 'r');
    const buf = Buffer.alloc(Math.min(st.size, MAX_RESULT_FILE_BYTES));
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  } finally {
    await handle?.close();
  }
}

export async function readResultFiles(jobDir: string, jobId: string) {
  const resultName = `_bot_job${jobId}.result`;
  const testName = `_bot_job${jobId}.test`;
  const resultText = await readLimited(path.join(jobDir, resultName));
  const testText = await readLimited(path.join(jobDir, testName));
  return {
    result: interpretResult(
      resultText === undefined ? undefined : parseIni(resultText),
      'result',
      resultName,
    ),
    test: interpretResult(testText === undefined ? undefined : parseIni(testText), 'test', testName),
  };
}
