/**
 * The executors every signalbus process registers, configured from the
 * environment: provider base URLs (fake providers in tests) and whether
 * webhooks may reach private addresses.
 */
import type { Config } from '../config.ts';
import { noopExecutor } from './noop.ts';
import type { Executor } from './registry.ts';

export function builtinExecutors(config: Config): Executor[] {
  const executors: Executor[] = [noopExecutor];
  // webhook executor
  // stripe executor
  // gmail executor
  // openai executor
  return executors;
}
