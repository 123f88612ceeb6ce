/** Issue and pull-request comments: create, update, read, and find the one that carries a marker. */
import type { Clients } from './auth.js';
import type { DryRunComments } from './dryRun.js';
import { checkNumber, ref } from './errors.js';
import type { CommentsApi, IssueComment } from './types.js';

export function commentsApi({ call }: Clients, dryRun: DryRunComments | undefined): CommentsApi {
  return {
    async createComment(repo, issueNumber, body) {
      checkNumber(issueNumber, 'issue number');
      if (dryRun) return dryRun.create(repo, issueNumber, body);
      return call(`comment on ${ref(repo)}#${issueNumber}`, repo, async (c) => {
        const { data } = await c.rest.issues.createComment({
          owner: repo.owner,
          repo: repo.repo,
          issue_number: issueNumber,
          body,
        });
        return toComment(data);
      });
    },

    async updateComment(repo, commentId, body) {
      checkNumber(commentId, 'comment id');
      if (dryRun) return dryRun.update(repo, commentId, body);
      await call(`update comment ${commentId} in ${ref(repo)}`, repo, (c) =>
        c.rest.issues.updateComment({ owner: repo.owner, repo: repo.repo, comment_id: commentId, body }),
      );
    },

    async getComment(repo, commentId) {
      checkNumber(commentId, 'comment id');
      if (dryRun) return dryRun.get(repo, commentId);
      return call(`read comment ${commentId} in ${ref(repo)}`, repo, async (c) => {
        const { data } = await c.rest.issues.getComment({
          owner: repo.owner,
          repo: repo.repo,
          comment_id: commentId,
        });
        return toComment(data);
      });
    },

    async findComment(repo, issueNumber, marker, options = {}) {
      checkNumber(issueNumber, 'issue number');
      if (!marker) throw new Error('findComment: empty marker');
      const matches = (cm: IssueComment) =>
        cm.body.includes(marker) && (options.author === undefined || cm.user === options.author);
      if (dryRun) return (await dryRun.list(repo, issueNumber)).find(matches);
      return call(`list the comments of ${ref(repo)}#${issueNumber}`, repo, async (c) => {
        const pages = c.paginate.iterator(c.rest.issues.listComments, {
          owner: repo.owner,
          repo: repo.repo,
          issue_number: issueNumber,
          per_page: 100,
        });
        for await (const page of pages) {
          const hit = page.data.map(toComment).find(matches);
          if (hit) return hit;
        }
        return undefined;
      });
    },
  };
}

function toComment(data: {
  id: number;
  body?: string | null;
  user?: { login: string } | null;
}): IssueComment {
  return { id: data.id, body: data.body ?? '', user: data.user?.login ?? '' };
}
