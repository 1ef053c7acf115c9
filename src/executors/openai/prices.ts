/**
 * What OpenAI models cost, per million tokens, and the arithmetic on it. The
 * table in code is OpenAI's list price for standard (non-batch) chat calls;
 * `SIGNALBUS_OPENAI_PRICES` overrides or extends it, so a price change or a
 * new model needs configuration, not a release. A model with no price cannot
 * be proposed: without one, neither the budget guard nor the recorded cost
 * would mean anything.
 */
import { z } from 'zod';

export const ModelPrice = z
  .object({
    input_per_1m: z.number().min(0).max(100_000),
    output_per_1m: z.number().min(0).max(100_000),
  })
  .strict();
export type ModelPrice = z.infer<typeof ModelPrice>;

/** The shape of `SIGNALBUS_OPENAI_PRICES`: model name → price. */
export const ModelPrices = z.record(z.string().min(1).max(200), ModelPrice);
export type ModelPrices = z.infer<typeof ModelPrices>;

/**
 * List prices in USD per million tokens. Cached input is billed cheaper by
 * OpenAI; the recorded cost charges every prompt token at the full input
 * price, which over-counts a little rather than under-count a budget.
 */
export const DEFAULT_MODEL_PRICES: Readonly<ModelPrices> = {
  'gpt-5': { input_per_1m: 1.25, output_per_1m: 10 },
  'gpt-5-mini': { input_per_1m: 0.25, output_per_1m: 2 },
  'gpt-5-nano': { input_per_1m: 0.05, output_per_1m: 0.4 },
  'gpt-4.1': { input_per_1m: 2, output_per_1m: 8 },
  'gpt-4.1-mini': { input_per_1m: 0.4, output_per_1m: 1.6 },
  'gpt-4.1-nano': { input_per_1m: 0.1, output_per_1m: 0.4 },
  'gpt-4o': { input_per_1m: 2.5, output_per_1m: 10 },
  'gpt-4o-mini': { input_per_1m: 0.15, output_per_1m: 0.6 },
  o3: { input_per_1m: 2, output_per_1m: 8 },
  'o3-mini': { input_per_1m: 1.1, output_per_1m: 4.4 },
  'o4-mini': { input_per_1m: 1.1, output_per_1m: 4.4 },
};

export interface PriceTable {
  /** The price of `model`, or of its undated alias for a dated snapshot (`gpt-4o-2024-08-06` → `gpt-4o`). */
  priceOf(model: string): ModelPrice | undefined;
  models(): string[];
}

const SNAPSHOT_SUFFIX = /-\d{4}-\d{2}-\d{2}$/;

/** The code's table with `overrides` (from configuration) laid over it. */
export function createPriceTable(overrides: ModelPrices = {}): PriceTable {
  const prices = new Map<string, ModelPrice>([...Object.entries(DEFAULT_MODEL_PRICES), ...Object.entries(overrides)]);
  return {
    priceOf(model) {
      return prices.get(model) ?? prices.get(model.replace(SNAPSHOT_SUFFIX, ''));
    },
    models: () => [...prices.keys()].sort(),
  };
}

const nanoUsd = (price: ModelPrice, tokensIn: number, tokensOut: number) =>
  Math.round(((tokensIn * price.input_per_1m + tokensOut * price.output_per_1m) / 1_000_000) * 1e9);

/** USD for a call, to the nano-dollar: float noise (0.1 + 0.2) stays out of the stored numeric. */
export function costUsd(price: ModelPrice, tokensIn: number, tokensOut: number): number {
  return nanoUsd(price, tokensIn, tokensOut) / 1e9;
}

/** The same, rounded up to the micro-dollar the budget guard compares in: an estimate must not fall short. */
export function costCeilingUsd(price: ModelPrice, tokensIn: number, tokensOut: number): number {
  return Math.ceil(nanoUsd(price, tokensIn, tokensOut) / 1000) / 1e6;
}
