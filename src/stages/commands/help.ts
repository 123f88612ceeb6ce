import { renderHelp } from '../../domain/render.js';
import type { CommandHandler } from './types.js';

export const help: CommandHandler = async () => renderHelp();
