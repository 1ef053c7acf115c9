/**
 * The executors every signalbus process registers, configured from the
 * environment: provider base URLs (fake providers in tests) and whether
 * webhooks may reach private addresses.
 */
import { createGmailExecutor } from './gmail/index.ts';
import { noopExecutor } from './noop.ts';
import { createOpenAIExecutor } from './openai/executor.ts';
import type { ModelPrices } from './openai/prices.ts';
import type { Executor } from './registry.ts';
import { createStripeExecutor } from './stripe/executor.ts';
import { createWebhookExecutor } from './webhook/index.ts';

/** What the built-in executors take from the configuration (`src/app.ts` maps it). */
export interface BuiltinExecutorOptions {
  allowPrivateTargets: boolean;
  stripeApiBase?: string | undefined;
  googleApiBase?: string | undefined;
  googleOAuthBase?: string | undefined;
  openaiBaseUrl?: string | undefined;
  openaiPrices?: ModelPrices | undefined;
}

export function builtinExecutors(options: BuiltinExecutorOptions): Executor[] {
  const executors: Executor[] = [noopExecutor];
  executors.push(createWebhookExecutor({ allowPrivateTargets: options.allowPrivateTargets }));
  executors.push(createStripeExecutor({ apiBase: options.stripeApiBase }));
  executors.push(createGmailExecutor({ apiBase: options.googleApiBase, oauthBase: options.googleOAuthBase }));
  executors.push(createOpenAIExecutor({ baseUrl: options.openaiBaseUrl, prices: options.openaiPrices }));
  return executors;
}
