/**
 * The executors every signalbus process registers, configured from the
 * environment: provider base URLs (fake providers in tests) and whether
 * webhooks may reach private addresses.
 */
import type { Config } from '../config.ts';
import { createGmailExecutor } from './gmail/index.ts';
import { noopExecutor } from './noop.ts';
import { createOpenAIExecutor } from './openai/executor.ts';
import type { Executor } from './registry.ts';
import { createStripeExecutor } from './stripe/executor.ts';
import { createWebhookExecutor } from './webhook/index.ts';

export function builtinExecutors(config: Config): Executor[] {
  const executors: Executor[] = [noopExecutor];
  executors.push(createWebhookExecutor({ allowPrivateTargets: config.SIGNALBUS_ALLOW_PRIVATE_TARGETS }));
  executors.push(createStripeExecutor({ apiBase: config.SIGNALBUS_STRIPE_API_BASE }));
  executors.push(createGmailExecutor({ apiBase: config.SIGNALBUS_GOOGLE_API_BASE, oauthBase: config.SIGNALBUS_GOOGLE_OAUTH_BASE }));
  executors.push(createOpenAIExecutor({ baseUrl: config.SIGNALBUS_OPENAI_BASE_URL, prices: config.SIGNALBUS_OPENAI_PRICES }));
  return executors;
}
