import { renderConfig } from '../../domain/render.js';
import type { CommandHandler } from './types.js';

export const showConfig: CommandHandler = async (ctx) => renderConfig(ctx.work.deps.config);
