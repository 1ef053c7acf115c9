/**
 * `openai.chat` params, checked at proposal, and the cost estimate the budget
 * guard weighs them by. The model must have a price in the executor's table
 * (code plus configuration): a directive whose cost cannot be bounded is a
 * 422 at proposal, never a surprise on the invoice.
 */
import { z } from 'zod';
import { isReservedType, SignalType } from '../../signals/model.ts';
import { costCeilingUsd, type PriceTable } from './prices.ts';
import { outputSchemaProblem } from './structured-output.ts';

/** Output tokens a directive may ask for: the largest completion current models produce. */
export const MAX_OUTPUT_TOKENS = 128_000;
const MAX_MESSAGES = 500;
const MAX_CONTENT_CHARS = 200_000;
const MAX_SCHEMA_CHARS = 64 * 1024;

export const ChatMessage = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant']),
    content: z.string().min(1).max(MAX_CONTENT_CHARS),
  })
  .strict();
export type ChatMessage = z.infer<typeof ChatMessage>;

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

export const ResponseSchema = z
  .object({
    /** OpenAI's rule for `json_schema.name`. */
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'name must be 1-64 letters, digits, _ or -'),
    description: z.string().max(2000).optional(),
    schema: z.custom<Record<string, unknown>>(isPlainObject, 'schema must be a JSON Schema object').superRefine((schema, ctx) => {
      if (JSON.stringify(schema).length > MAX_SCHEMA_CHARS) {
        ctx.addIssue({ code: 'custom', message: `schema must be at most ${MAX_SCHEMA_CHARS} characters of JSON` });
        return;
      }
      const problem = outputSchemaProblem(schema);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    /** OpenAI's strict mode: the model is constrained to the schema (which must then follow its subset). */
    strict: z.boolean().optional(),
  })
  .strict();
export type ResponseSchema = z.infer<typeof ResponseSchema>;

export const EmitSpec = z
  .object({
    // Result signals are recorded as the bus's own: a reserved type here would forge a lifecycle fact.
    type: SignalType.refine((type) => !isReservedType(type), 'type must not use a prefix the bus reserves (directive., execution., …)'),
    subject: z.string().min(1).max(256).optional(),
  })
  .strict();
export type EmitSpec = z.infer<typeof EmitSpec>;

export interface ChatParams {
  model: string;
  messages: ChatMessage[];
  max_tokens: number;
  temperature?: number | undefined;
  response_schema?: ResponseSchema | undefined;
  emit?: EmitSpec | undefined;
}

/** The params schema of `openai.chat`, knowing which models have a price. */
export function chatParamsSchema(prices: PriceTable): z.ZodType<ChatParams> {
  return z
    .object({
      model: z
        .string()
        .min(1)
        .max(200)
        .superRefine((model, ctx) => {
          if (!prices.priceOf(model)) {
            ctx.addIssue({ code: 'custom', message: `no price is known for model ${model}; add one with SIGNALBUS_OPENAI_PRICES` });
          }
        }),
      messages: z.array(ChatMessage).min(1).max(MAX_MESSAGES),
      /** Required: it bounds the output, hence the cost the budget guard counts before the call. */
      max_tokens: z.number().int().min(1).max(MAX_OUTPUT_TOKENS),
      temperature: z.number().min(0).max(2).optional(),
      response_schema: ResponseSchema.optional(),
      emit: EmitSpec.optional(),
    })
    .strict();
}

/** Tokens every message costs beyond its text (role and separators), and the reply's priming. */
const PER_MESSAGE_TOKENS = 4;
const REPLY_PRIMING_TOKENS = 3;

/**
 * An upper bound on prompt tokens without a tokenizer. A token of OpenAI's
 * byte-level BPE spans at least one byte, and about four bytes of English;
 * a third of the UTF-8 bytes over-counts English text and roughly matches
 * CJK, where a character (three bytes) is about one token. The response
 * schema is part of the prompt too.
 */
export function estimatePromptTokens(params: Pick<ChatParams, 'messages' | 'response_schema'>): number {
  let tokens = REPLY_PRIMING_TOKENS;
  for (const message of params.messages) {
    tokens += PER_MESSAGE_TOKENS + Math.ceil(Buffer.byteLength(message.role + message.content, 'utf8') / 3);
  }
  if (params.response_schema) {
    tokens += PER_MESSAGE_TOKENS + Math.ceil(Buffer.byteLength(JSON.stringify(params.response_schema), 'utf8') / 3);
  }
  return tokens;
}

/**
 * The most a call can cost: the estimated prompt at the input price plus
 * every allowed output token at the output price (reasoning tokens count
 * against max_tokens too). The budget guard weighs a proposal by this; the
 * executed directive's actual cost replaces it once known.
 */
export function estimateChatCostUsd(prices: PriceTable, params: ChatParams): number {
  const price = prices.priceOf(params.model);
  // Unreachable through a proposal: the params check, run just before with
  // the same table, refuses unpriced models.
  if (!price) throw new Error(`no price is known for model ${params.model}`);
  return costCeilingUsd(price, estimatePromptTokens(params), params.max_tokens);
}
