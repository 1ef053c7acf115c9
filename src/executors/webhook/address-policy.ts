/**
 * Which network targets a webhook may reach: a pure classifier of IP
 * addresses and host names, no I/O. Deny by default — only globally routable
 * unicast passes — so a range ipaddr.js learns later, or one we forgot to
 * list, is refused rather than reachable.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

export type AddressVerdict = { allowed: true; range: 'unicast' } | { allowed: false; range: string };

/** The NAT64 well-known prefix (RFC 6052) and 6to4 (RFC 3056) embed an IPv4 address a gateway may forward to. */
const NAT64 = ipaddr.IPv6.parseCIDR('64:ff9b::/96');
const SIX_TO_FOUR = ipaddr.IPv6.parseCIDR('2002::/16');

const refused = (range: string): AddressVerdict => ({ allowed: false, range });

function classifyIPv4(address: ipaddr.IPv4, via?: string): AddressVerdict {
  const range = address.range();
  if (range === 'unicast') return { allowed: true, range };
  return refused(via ? `${via}:${range}` : range);
}

function embeddedIPv4(parts: number[], high: number): ipaddr.IPv4 {
  const hi = parts[high]!;
  const lo = parts[high + 1]!;
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

/**
 * Classifies one IP address (v4, v6, bracketed v6, v6 with a zone). Anything
 * that is not an IP address in canonical form is refused as `not_an_ip`:
 * Node's own `isIP` decides, so `0x7f.1` or `2130706433` never get a
 * friendlier reading here than the socket would give them.
 */
export function classifyAddress(input: string): AddressVerdict {
  const address = input.startsWith('[') && input.endsWith(']') ? input.slice(1, -1) : input;
  if (isIP(address) === 0) return refused('not_an_ip');
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') return classifyIPv4(parsed as ipaddr.IPv4);

  const v6 = parsed as ipaddr.IPv6;
  // ::ffff:127.0.0.1 connects to 127.0.0.1: judge the IPv4 address inside.
  if (v6.isIPv4MappedAddress()) return classifyIPv4(v6.toIPv4Address(), 'ipv4Mapped');
  if (v6.match(NAT64)) return classifyIPv4(embeddedIPv4(v6.parts, 6), 'rfc6052');
  if (v6.match(SIX_TO_FOUR)) return classifyIPv4(embeddedIPv4(v6.parts, 1), '6to4');
  const range = v6.range();
  // The deprecated IPv4-compatible form (::a.b.c.d) falls in no named range
  // of ipaddr.js and would otherwise pass as unicast.
  if (range === 'unicast' && v6.parts.slice(0, 6).every((part) => part === 0)) return refused('ipv4Compatible');
  if (range === 'unicast') return { allowed: true, range };
  return refused(range);
}

/** Names of cloud metadata services and of the local machine, refused before any resolution. */
const REFUSED_NAMES = new Set(['localhost', 'metadata', 'metadata.goog', 'metadata.google.internal', 'instance-data']);
/** Suffixes reserved for local or private use (RFC 6761, RFC 6762, ICANN's `.internal`). */
const REFUSED_SUFFIXES = ['.localhost', '.local', '.internal', '.home.arpa'];

/** Why a host name (not an IP literal) is refused by name alone, or null. */
export function refusedHostname(hostname: string): string | null {
  const name = hostname.toLowerCase().replace(/\.+$/, '');
  if (name === '') return 'empty host name';
  if (REFUSED_NAMES.has(name)) return `${name} is a local or metadata host name`;
  const suffix = REFUSED_SUFFIXES.find((candidate) => name.endsWith(candidate));
  if (suffix) return `${name} is under ${suffix}, reserved for local use`;
  return null;
}

/**
 * Why the host of a URL is refused before any connection, or null when it
 * may be tried. An IP literal is judged here for good: Node connects to a
 * literal without calling `lookup`. A name still has to pass the guarded
 * lookup on every address it resolves to.
 */
export function refusedHost(host: string): string | null {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) !== 0) {
    const verdict = classifyAddress(bare);
    return verdict.allowed ? null : `${bare} is a ${verdict.range} address`;
  }
  return refusedHostname(bare);
}
