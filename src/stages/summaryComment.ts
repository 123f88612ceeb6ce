/**
 * `reporting.comments: summary`: instead of a comment per job, one comment per PR and instance with this
 * instance's part of the target matrix, edited when it changes. A PR's jobs span events (and months), so
 * the comment's record lives beside them, in `<jobdirs>/summaries/<owner>/<repo>/pr_<N>.json`: the
 * intent before the POST, the id after; a retry that finds an intent without an id looks the comment up
 * by its marker instead of posting a second. Written only when its body changed (the sha256 is kept).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { commentMarker, fitComment, neutralizeCommands } from '../domain/markdown.js';
import { renderSummaryComment } from '../domain/targetMatrix.js';
import { crashPoint } from '../store/crashPoint.js';
import { mkdirDurable, readJsonIfExists, writeFileAtomic } from '../store/fsutil.js';
import type { JobData } from '../store/job.js';
import type { WorkDir } from './context.js';
import { prJobs, prRefOfJob } from './job.js';

interface SummaryRecord {
  intent_at?: string;
  id?: number;
  /** sha256 of the body last written. */
  sent?: string;
}

export async function syncSummaryComment(work: WorkDir<JobData>): Promise<void> {
  const { config, github, jobdirs, logger, now } = work.deps;
  const pr = prRefOfJob(work.state.data);
  const jobs = await prJobs(work.deps, pr);
  const text = renderSummaryComment(
    config.instance,
    jobs.map(({ state }) => ({
      stage: state.stage,
      data: state.data,
      createdAt: state.history[0]?.at ?? '',
    })),
  );
  const marker = commentMarker(config.instance, `pr_${pr.number}#summary`);
  const body = fitComment(neutralizeCommands(text), marker);
  const digest = createHash('sha256').update(body).digest('hex');
  const file = path.join(jobdirs.root, 'summaries', pr.repo.owner, pr.repo.repo, `pr_${pr.number}.json`);
  const known = (await readJsonIfExists<SummaryRecord>(file)) ?? {};
  if (known.sent === digest) return;
  const save = (r: SummaryRecord) => writeFileAtomic(file, JSON.stringify(r) + '\n');
  let id = known.id;
  if (id === undefined && known.intent_at) {
    const author = config.github.bot_login;
    id = (await github.findComment(pr.repo, pr.number, marker, author ? { author } : {}))?.id;
    if (id !== undefined) logger.info({ file, id }, 'found the summary comment a crashed attempt posted');
  }
  if (id === undefined) {
    const intent = { intent_at: now().toISOString() };
    await mkdirDurable(path.dirname(file));
    await save(intent);
    const created = await github.createComment(pr.repo, pr.number, body);
    crashPoint('after-summary-created');
    await save({ ...intent, id: created.id, sent: digest });
    return;
  }
  await github.updateComment(pr.repo, id, body);
  await save({ ...known, id, sent: digest });
}
