/** Deploy: permission check, then upload of successful artefacts (the uploaders are not built yet). */
import { codeSpan } from '../markdown.js';
import { hasPermission } from '../permissions.js';
import type { EventContext } from './event.js';

export async function startDeploy(ctx: EventContext, sender: string): Promise<string> {
  const { config, github } = ctx.work.deps;
  if (!(await hasPermission(github, ctx.pr.repo, sender, config.permissions.deploy))) {
    return `account ${codeSpan(sender)} has NO permission to deploy`;
  }
  return `instance ${codeSpan(config.instance)} has no uploader configured, so nothing was deployed`;
}
