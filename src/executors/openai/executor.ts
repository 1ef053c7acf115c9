/**
 * `openai.chat`: one chat completion through the official SDK, with the
 * org's (or installation's) `openai_api_key`. Tokens and cost come from the
 * response's `usage` priced by the executor's table, and are recorded on the
 * execution and the directive, where the budget guard counts them. With a
 * `response_schema` the output must be JSON that validates against it; the
 * output is the directive's evidence and, with `emit`, the payload of a
 * derived signal recorded in the outcome's transaction.
 */
import OpenAI from 'openai';
import type { ChatCompletion, ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import type { ExecuteRequest, ExecuteResult, Executor, ResultSignal } from '../registry.ts';
import { OPENAI_API_KEY, outcomeOfError } from './errors.ts';
import { chatParamsSchema, estimateChatCostUsd, type ChatParams } from './params.ts';
import { costUsd, createPriceTable, type ModelPrices, type PriceTable } from './prices.ts';
import { compileOutputSchema, evidenceOf, type OutputValidator } from './structured-output.ts';

export const OPENAI_CHAT = 'openai.chat';
const DEFAULT_BASE_URL = 'https://api.openai.com/v1';
/**
 * Long completions (reasoning models, large max_tokens) take minutes; past
 * this the attempt is abandoned as retryable rather than holding a worker
 * slot for the SDK's default ten.
 */
const DEFAULT_TIMEOUT_MS = 5 * 60_000;

export interface OpenAIExecutorOptions {
  /** The API root including `/v1` (`SIGNALBUS_OPENAI_BASE_URL`); OpenAI's own when unset. */
  baseUrl?: string | undefined;
  /** Price overrides and additions (`SIGNALBUS_OPENAI_PRICES`). */
  prices?: ModelPrices | undefined;
  timeoutMs?: number | undefined;
}

export function createOpenAIExecutor(options: OpenAIExecutorOptions = {}): Executor<ChatParams> {
  const prices = createPriceTable(options.prices);
  const baseURL = options.baseUrl ?? DEFAULT_BASE_URL;
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return {
    kinds: [OPENAI_CHAT],
    params: { [OPENAI_CHAT]: chatParamsSchema(prices) },
    estimateCostUsd: (_kind, params) => estimateChatCostUsd(prices, params),
    // OpenAI does not deduplicate requests, so a repeat after a crash with an
    // unknown outcome makes a second completion. That is safe here: a chat
    // completion changes nothing outside, its only side effect is its cost
    // (bounded by the estimate the budget already counted), and the outcome
    // is recorded once, under keys derived from the directive, so a second
    // result adds neither a result nor a derived signal. Failing such
    // directives as needs_reconcile would protect nothing.
    honorsIdempotencyKey: true,
    async execute(request) {
      return runChat(request, { prices, baseURL, timeout });
    },
  };
}

async function runChat(
  { params, credentials, directiveId }: ExecuteRequest<ChatParams>,
  { prices, baseURL, timeout }: { prices: PriceTable; baseURL: string; timeout: number },
): Promise<ExecuteResult> {
  const apiKey = await credentials.get(OPENAI_API_KEY);
  if (!apiKey) {
    return { outcome: 'permanent', error: { code: 'missing_credential', message: `no secret named ${OPENAI_API_KEY} for this installation or org` } };
  }
  // Checked at proposal; the table could have lost the model in a restart since.
  const price = prices.priceOf(params.model);
  if (!price) {
    return { outcome: 'permanent', error: { code: 'unknown_model_price', message: `no price is known for model ${params.model}` } };
  }
  // Organization, project and base URL are passed explicitly (null when
  // unused) so the SDK does not fill them from OPENAI_* environment variables.
  const client = new OpenAI({ apiKey, baseURL, organization: null, project: null, maxRetries: 0, timeout, logLevel: 'off' });
  let completion: ChatCompletion;
  try {
    completion = await client.chat.completions.create(requestBody(params));
  } catch (error) {
    return outcomeOfError(error, apiKey);
  }

  const choice = completion.choices[0];
  if (!choice) return { outcome: 'permanent', error: { code: 'empty_response', message: 'OpenAI returned no choices' } };
  const tokensIn = completion.usage?.prompt_tokens;
  const tokensOut = completion.usage?.completion_tokens;
  // Without usage the call still cost something: record the estimate, an upper bound.
  const cost = tokensIn !== undefined && tokensOut !== undefined ? costUsd(price, tokensIn, tokensOut) : estimateChatCostUsd(prices, params);
  const usage = {
    model: completion.model,
    ...(tokensIn !== undefined ? { tokens_in: tokensIn } : {}),
    ...(tokensOut !== undefined ? { tokens_out: tokensOut } : {}),
  };

  if (choice.message.refusal) {
    return { outcome: 'permanent', error: { code: 'model_refused', message: choice.message.refusal.slice(0, 500) } };
  }
  const text = choice.message.content ?? '';
  let parsed: { value: unknown } | undefined;
  if (params.response_schema) {
    const structured = checkStructured(text, params.response_schema.schema, choice.finish_reason);
    if (!structured.ok) return { outcome: 'permanent', error: { code: 'invalid_structured_output', message: structured.message } };
    parsed = { value: structured.value };
  }

  const evidence = evidenceOf(text, parsed);
  const schema = params.response_schema?.name ?? null;
  const result = { id: completion.id, model: completion.model, finish_reason: choice.finish_reason, schema, ...evidence };
  const signals: ResultSignal[] = params.emit
    ? [
        {
          type: params.emit.type,
          ...(params.emit.subject ? { subject: params.emit.subject } : {}),
          payload: { ...evidence, model: completion.model, schema, directive_id: directiveId, completion_id: completion.id },
        },
      ]
    : [];
  return { outcome: 'succeeded', result, costUsd: cost, usage, ...(signals.length ? { signals } : {}) };
}

function requestBody(params: ChatParams): ChatCompletionCreateParamsNonStreaming {
  const schema = params.response_schema;
  return {
    model: params.model,
    messages: params.messages,
    // max_completion_tokens: the reasoning models refuse the older max_tokens.
    max_completion_tokens: params.max_tokens,
    ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
    ...(schema
      ? {
          response_format: {
            type: 'json_schema' as const,
            json_schema: {
              name: schema.name,
              schema: schema.schema,
              ...(schema.description !== undefined ? { description: schema.description } : {}),
              ...(schema.strict !== undefined ? { strict: schema.strict } : {}),
            },
          },
        }
      : {}),
  };
}

/** The output parsed and validated; the message names what is wrong, never the output itself. */
function checkStructured(
  text: string,
  schema: Record<string, unknown>,
  finishReason: string,
): { ok: true; value: unknown } | { ok: false; message: string } {
  const cut = finishReason === 'length' ? ' (the output was cut off at max_tokens)' : '';
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, message: `the output is not JSON${cut}` };
  }
  let validator: OutputValidator;
  try {
    validator = compileOutputSchema(schema);
  } catch (error) {
    // Accepted at proposal; a validator upgrade since may refuse it.
    return { ok: false, message: (error as Error).message };
  }
  const check = validator.check(value);
  if (!check.ok) return { ok: false, message: `the output does not match the schema${cut}: ${check.problems.join('; ')}` };
  return { ok: true, value };
}
