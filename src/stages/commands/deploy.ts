/** `bot: deploy`: the same as adding the `bot:deploy` label. */
import { startDeploy } from '../deploy.js';
import type { CommandHandler } from './types.js';

export const deploy: CommandHandler = async (ctx) => startDeploy(ctx, ctx.sender);
