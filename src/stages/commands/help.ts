import { renderHelp } from '../../domain/render.js';
import { describeTargetSets } from '../../domain/targetSets.js';
import type { CommandHandler } from './types.js';

export const help: CommandHandler = async (ctx) => {
  const sets = describeTargetSets(ctx.work.deps.config.target_sets);
  if (sets.length === 0) return renderHelp();
  return [
    renderHelp(),
    '- target sets of this instance (`bot: build for:set=<name>`):',
    ...sets.map((s) => `  - ${s}`),
  ].join('\n');
};
