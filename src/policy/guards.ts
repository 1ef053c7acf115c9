/**
 * The built-in guards: rate limits, monthly budgets and recipient lists.
 * Every check fails closed — a counter the caller did not supply, a cost that
 * is not a number, or a param that is neither a string nor a list of strings
 * fails the guard rather than letting the directive through unchecked.
 */
import { matchesKind } from './glob.ts';
import type { DecisionInput, GuardResult, GuardUsage, ListGuard, PolicyGuards, SuppressionGuard } from './model.ts';

/** Evaluates every guard that covers `kind`, in order rate limits, budgets, lists, suppressions. */
export function evaluateGuards(guards: PolicyGuards, input: DecisionInput, usage: GuardUsage): GuardResult[] {
  const kind = input.directive.kind;
  const results: GuardResult[] = [];
  guards.rate_limits.forEach((guard, index) => {
    if (!matchesKind(guard.match, kind)) return;
    const count = usage.rate_limits[index];
    const base = { guard: 'rate_limit' as const, index, match: guard.match };
    if (!isCount(count)) {
      const detail = `rate limit usage for ${guard.match} was not provided (fail-closed)`;
      results.push({ ...base, passed: false, detail });
      return;
    }
    const passed = count + 1 <= guard.limit;
    const window = `${guard.window_seconds}s`;
    results.push({
      ...base,
      passed,
      detail: passed
        ? `${count + 1} of ${guard.limit} per ${window} for ${guard.match}`
        : `rate limit exceeded for ${guard.match}: ${count} already in the last ${window}, limit ${guard.limit}`,
    });
  });
  guards.budgets.forEach((guard, index) => {
    if (!matchesKind(guard.match, kind)) return;
    const outcome = checkBudget(guard.monthly_usd, usage.budgets[index], input.directive.estimated_cost_usd);
    results.push({ guard: 'budget', index, match: guard.match, ...outcome });
  });
  guards.lists.forEach((guard, index) => {
    if (!matchesKind(guard.match, kind)) return;
    results.push({ guard: 'list', index, match: guard.match, ...checkList(guard, input.params) });
  });
  const recipients = input.directive.recipients ?? [];
  if (guards.suppressions && recipients.length > 0) {
    results.push({ guard: 'suppression', index: 0, match: '*', ...checkSuppressions(guards.suppressions, recipients) });
  }
  return results;
}

/** `Name <a@b.com>` → `a@b.com`: the address is what a suppression names. */
const addressOf = (recipient: string) => normalizeValue(/<([^<>]*)>\s*$/.exec(recipient)?.[1] ?? recipient);

function checkSuppressions(guard: SuppressionGuard, recipients: readonly string[]) {
  const addresses = new Set(guard.addresses.map(addressOf));
  const domains = new Set(guard.domains.map(normalizeDomain));
  for (const recipient of recipients) {
    const address = addressOf(recipient);
    const domain = domainOf(address);
    if (addresses.has(address)) return { passed: false, detail: `recipient '${address}' is on the suppression list` };
    if (domain !== null && domains.has(domain)) return { passed: false, detail: `recipient '${address}' is in a suppressed domain` };
  }
  return { passed: true, detail: `${recipients.length} recipient(s) not suppressed` };
}

function isCount(value: number | undefined): value is number {
  return value !== undefined && Number.isInteger(value) && value >= 0;
}

// Money is compared in whole micro-dollars: in floating point 0.1 + 0.2 > 0.3,
// which would refuse a directive landing exactly on the budget.
const toMicros = (usd: number) => Math.round(usd * 1_000_000);
const isAmount = (usd: number | undefined): usd is number => usd !== undefined && Number.isFinite(usd) && usd >= 0;

function formatUsd(micros: number): string {
  const text = (micros / 1_000_000).toFixed(micros % 10_000 === 0 ? 2 : 6);
  return `$${micros % 10_000 === 0 ? text : text.replace(/0+$/, '')}`;
}

function checkBudget(monthlyUsd: number, spentUsd: number | undefined, cost: number) {
  if (!isAmount(spentUsd)) return { passed: false, detail: 'budget usage was not provided (fail-closed)' };
  if (!isAmount(cost)) return { passed: false, detail: 'the estimated cost is not a valid amount (fail-closed)' };
  const spent = toMicros(spentUsd);
  const estimated = toMicros(cost);
  const limit = toMicros(monthlyUsd);
  const amounts = `${formatUsd(spent)} spent + ${formatUsd(estimated)} estimated`;
  return spent + estimated <= limit
    ? { passed: true, detail: `${amounts} within ${formatUsd(limit)} monthly` }
    : { passed: false, detail: `monthly budget exceeded: ${amounts} > ${formatUsd(limit)}` };
}

/**
 * Whole values compare case-insensitively; domains are the part after the
 * last `@`, compared exactly (a subdomain does not match its parent). A
 * trailing `>` (from `Name <a@b.com>`) or root `.` is dropped so neither can
 * slip past a deny list; a leading `@` in a configured domain is ignored.
 */
const normalizeValue = (value: string) => value.trim().toLowerCase();
const normalizeDomain = (domain: string) =>
  domain.trim().toLowerCase().replace(/^@/, '').replace(/>$/, '').replace(/\.$/, '');

function domainOf(value: string): string | null {
  const at = value.lastIndexOf('@');
  return at === -1 ? null : normalizeDomain(value.slice(at + 1));
}

function checkList(guard: ListGuard, params: Record<string, unknown>) {
  const raw = readPath(params, guard.param);
  const name = `param '${guard.param}'`;
  const restricted = guard.allow !== undefined || guard.allow_domains !== undefined;
  const values = typeof raw === 'string' ? [raw] : raw;
  if (values === undefined || values === null || (Array.isArray(values) && values.length === 0)) {
    return restricted
      ? { passed: false, detail: `${name} is missing but an allow list requires it` }
      : { passed: true, detail: `${name} is absent; nothing to check` };
  }
  if (!Array.isArray(values) || !values.every((value) => typeof value === 'string')) {
    return { passed: false, detail: `${name} is not a string or a list of strings (fail-closed)` };
  }
  const deny = new Set(guard.deny?.map(normalizeValue));
  const denyDomains = new Set(guard.deny_domains?.map(normalizeDomain));
  const allow = new Set(guard.allow?.map(normalizeValue));
  const allowDomains = new Set(guard.allow_domains?.map(normalizeDomain));
  for (const value of values as string[]) {
    const normalized = normalizeValue(value);
    const domain = domainOf(value);
    if (deny.has(normalized)) return { passed: false, detail: `${name}: '${value}' is on the deny list` };
    if (domain !== null && denyDomains.has(domain)) {
      return { passed: false, detail: `${name}: '${value}' is in a denied domain` };
    }
    if (restricted && !allow.has(normalized) && !(domain !== null && allowDomains.has(domain))) {
      return { passed: false, detail: `${name}: '${value}' is not on the allow list` };
    }
  }
  return { passed: true, detail: `${name}: ${values.length} value(s) passed` };
}

/** Own properties only, so `constructor` or `__proto__` never resolve to something. */
function readPath(params: Record<string, unknown>, path: string): unknown {
  let current: unknown = params;
  for (const segment of path.split('.')) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined;
    if (!Object.hasOwn(current, segment)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}
