import { renderConfig } from '../../domain/render.js';
import { renderTargetSetsExpanded } from '../../domain/targetSets.js';
import type { CommandHandler } from './types.js';

export const showConfig: CommandHandler = async (ctx) => {
  const { config } = ctx.work.deps;
  return [renderConfig(config), ...renderTargetSetsExpanded(config.target_sets)].join('\n');
};
