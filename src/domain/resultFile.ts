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
 * markdown (code spans, emoji), with its tags balanced; anything else is escaped. A file over the size
 * limit, or one that is a link or not a regular file, is not read at all: the job is UNKNOWN and its
 * comment says why.
 */
import { parseIni, type IniSections } from './ini.js';
import type { ResultSummary } from '../store/job.js';
import { openJobFile, readHead } from '../store/jobFile.js';
import { workTreeOf } from '../store/workTree.js';

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

const VOID_TAGS = new Set(['br']);

/**
 * Keep attribute-free safe tags, balanced: a closing tag with no open match is escaped, a closing tag
 * closes whatever is still open inside its match, and what is left open is closed at the end; so a
 * description cannot close or leave open a block of the comment around it. Everything else that HTML
 * or markdown would interpret is escaped.
 */
export function sanitizeDescription(input: string): string {
  const text = input.replace(/[\r\n]+/g, ' ').slice(0, MAX_DESCRIPTION_CHARS);
  const open: string[] = [];
  const close = (n: number) =>
    open
      .splice(open.length - n)
      .reverse()
      .map((t) => `</${t}>`)
      .join('');
  let out = '';
  let i = 0;
  while (i < text.length) {
    const tag = /^<(\/?)([a-z]+)\s*(\/?)>/i.exec(text.slice(i));
    const name = tag?.[2]!.toLowerCase();
    if (tag && name && SAFE_TAGS.has(name)) {
      const [whole, closing, , selfClosing] = tag;
      if (VOID_TAGS.has(name)) {
        if (!closing) out += `<${name}${selfClosing ? '/' : ''}>`;
        else out += escapeText(whole);
      } else if (closing) {
        const at = open.lastIndexOf(name);
        out += at < 0 ? escapeText(whole) : close(open.length - at);
      } else {
        // `<details/>` opens a details element in HTML too: the slash means nothing on it.
        open.push(name);
        out += `<${name}>`;
      }
      i += whole.length;
      continue;
    }
    out += escapeChar(text[i]!);
    i++;
  }
  return out + close(open.length);
}

function escapeText(s: string): string {
  return [...s].map(escapeChar).join('');
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

/** What became of reading one result file: its text, why it was not read, or undefined if missing. */
type ReadResult = { text: string } | { unread: string } | undefined;

async function readLimited(root: string, name: string): Promise<ReadResult> {
  const opened = await openJobFile(root, name);
  if (!opened.ok) return opened.missing ? undefined : { unread: opened.reason };
  try {
    if (opened.stat.size > MAX_RESULT_FILE_BYTES) return { unread: tooLong(`${opened.stat.size} bytes, `) };
    const head = await readHead(opened.handle, MAX_RESULT_FILE_BYTES + 1);
    // It may have grown since the fstat.
    if (head.length > MAX_RESULT_FILE_BYTES) return { unread: tooLong('') };
    return { text: head.toString('utf8') };
  } finally {
    await opened.handle.close();
  }
}

const tooLong = (size: string) => `is too long (${size}over the limit of ${MAX_RESULT_FILE_BYTES} bytes)`;

/** A result file that is there but was not read (`reason` is the bot's own text): UNKNOWN, saying why. */
export function unreadResult(fileName: string, reason: string): ParsedResult {
  return {
    summary: { status: 'UNKNOWN', description: `${fileName} ${reason} and was not read`, artefacts: [] },
    descriptionHtml: `:shrug: UNKNOWN (${codeName(fileName)} ${reason} and was not read)`,
  };
}

/** Read `_bot_job<ID>.result` and `.test` from the job's work tree. */
export async function readResultFiles(jobDir: string, jobId: string) {
  const tree = workTreeOf(jobDir);
  const read = async (kind: 'result' | 'test') => {
    const name = `_bot_job${jobId}.${kind}`;
    const r = await readLimited(tree, name);
    if (r && 'unread' in r) return unreadResult(name, r.unread);
    return interpretResult(r === undefined ? undefined : parseIni(r.text), kind, name);
  };
  return { result: await read('result'), test: await read('test') };
}

/** The node files of the 2026 job contract: what the build node said about itself. */
export const NODE_FILE_KINDS = ['lscpu', 'ulimits', 'os'] as const;
export type NodeFiles = Partial<Record<(typeof NODE_FILE_KINDS)[number], string>>;

/** Read `_bot_job<ID>.lscpu`, `.ulimits` and `.os` from the work tree (each up to the size limit). */
export async function readNodeFiles(jobDir: string, jobId: string): Promise<NodeFiles> {
  const tree = workTreeOf(jobDir);
  const files: NodeFiles = {};
  for (const kind of NODE_FILE_KINDS) {
    const r = await readLimited(tree, `_bot_job${jobId}.${kind}`);
    if (r && 'text' in r) files[kind] = r.text;
  }
  return files;
}

/** Pure: the CPU model from `lscpu` output (`Model name:`), as plain text for a code span, or undefined. */
export function cpuModelOf(lscpu: string | undefined): string | undefined {
  const m = /^\s*Model name:[ \t]*(.+)$/m.exec(lscpu ?? '');
  const model = m?.[1]
    ?.replace(/[^\x20-\x7e]/g, '')
    .replace(/`/g, "'")
    .trim()
    .slice(0, 120);
  return model || undefined;
}
