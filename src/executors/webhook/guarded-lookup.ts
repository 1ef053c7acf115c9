/**
 * The DNS step of a webhook connection, done by us. Node's socket calls this
 * `lookup` and connects to exactly the addresses it returns, so checking
 * them here checks the address actually connected: there is no second
 * resolution between the check and the connect for a rebinding name to
 * answer differently.
 */
import { promises as dns, type LookupAddress, type LookupOptions } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { classifyAddress, refusedHostname } from './address-policy.ts';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to its addresses; injectable so tests control DNS. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) => {
  const answers = await dns.lookup(hostname, { all: true, verbatim: true });
  return answers.map(({ address, family }) => ({ address, family: family === 6 ? 6 : 4 }));
};

/** A target refused by the SSRF guard; the socket fails with it before connecting. */
export class TargetRefusedError extends Error {
  readonly code = 'SSRF_REFUSED';
  constructor(message: string) {
    super(message);
    this.name = 'TargetRefusedError';
  }
}

function notFound(hostname: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${hostname} has no address`);
  error.code = 'ENOTFOUND';
  return error;
}

/**
 * Why the addresses a name resolved to are refused, or null. Every address
 * must pass, not only the first: a socket trying addresses in turn (happy
 * eyeballs) may connect to any of them.
 */
export function refusedAddresses(hostname: string, addresses: readonly ResolvedAddress[]): string | null {
  for (const { address } of addresses) {
    const verdict = classifyAddress(address);
    if (!verdict.allowed) return `${hostname} resolves to ${address}, a ${verdict.range} address`;
  }
  return null;
}

/**
 * A `lookup` for `http.request`/`net.connect`: resolves with `resolve`,
 * refuses the name or any of its addresses unless private targets are
 * allowed, and hands the socket only what it checked.
 */
export function createGuardedLookup({ resolve, allowPrivateTargets }: { resolve: Resolver; allowPrivateTargets: boolean }): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    const answer = async (): Promise<ResolvedAddress[]> => {
      if (!allowPrivateTargets) {
        const byName = refusedHostname(hostname);
        if (byName) throw new TargetRefusedError(byName);
      }
      const wanted = options.family === 4 || options.family === 6 ? options.family : undefined;
      const addresses = (await resolve(hostname)).filter((entry) => wanted === undefined || entry.family === wanted);
      if (addresses.length === 0) throw notFound(hostname);
      if (!allowPrivateTargets) {
        const reason = refusedAddresses(hostname, addresses);
        if (reason) throw new TargetRefusedError(reason);
      }
      return addresses;
    };
    answer().then(
      (addresses) => {
        if (options.all) callback(null, addresses.map(({ address, family }): LookupAddress => ({ address, family })));
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (error: NodeJS.ErrnoException) => callback(error, ''),
    );
  };
}
