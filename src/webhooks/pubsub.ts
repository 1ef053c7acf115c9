/**
 * Google Cloud Pub/Sub push: the subscription signs each push with an OIDC
 * token (`Authorization: Bearer …`) issued by Google for its service
 * account. `google-auth-library` checks the token's signature against
 * Google's published keys, its expiry (with the library's five-minute clock
 * skew) and its audience; the issuer and, when the manifest names one, the
 * service account (`email`, verified) are checked here. The keys' URL is
 * configurable so tests serve their own on loopback.
 */
import { OAuth2Client } from 'google-auth-library';
import { DomainError } from '../core/errors.ts';

/** Google's issuers for OIDC tokens. */
export const GOOGLE_ISSUERS = ['accounts.google.com', 'https://accounts.google.com'];

export interface PubsubVerifierOptions {
  /** A URL answering `{kid: PEM}` (Google's `oauth2/v1/certs` shape); Google's when absent. */
  certsUrl?: string;
  issuers?: string[];
}

export interface PubsubVerifier {
  client: OAuth2Client;
  issuers: string[];
}

/** One client per process: it caches Google's keys for as long as their response allows. */
export function createPubsubVerifier(options: PubsubVerifierOptions = {}): PubsubVerifier {
  const client = new OAuth2Client(options.certsUrl ? { endpoints: { oauth2FederatedSignonPemCertsUrl: options.certsUrl } } : {});
  return { client, issuers: options.issuers ?? GOOGLE_ISSUERS };
}

interface Delivery {
  body: Buffer;
  headers: Readonly<Record<string, string>>;
}

const TOKEN_TIME = /too (late|early)|expiration time too far/i;

export async function verifyPubsubPush(
  verifier: PubsubVerifier,
  delivery: Delivery,
  expected: { audience: string; serviceAccount?: string | undefined },
  parseJson: (body: Buffer) => unknown,
): Promise<{ body: unknown; data: unknown }> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(delivery.headers.authorization ?? '');
  if (!match) throw new DomainError('invalid_signature', 'send the push subscription’s OIDC token as Authorization: Bearer …');
  let claims;
  try {
    // The keys come first: failing to fetch them is ours, not the sender's.
    const { certs } = await verifier.client.getFederatedSignonCertsAsync();
    const ticket = await verifier.client.verifySignedJwtWithCertsAsync(match[1]!, certs, expected.audience, verifier.issuers);
    claims = ticket.getPayload();
  } catch (error) {
    if (error instanceof DomainError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    if (/Failed to retrieve verification certificates/.test(message)) throw new DomainError('unavailable', 'the token keys cannot be fetched; retry later');
    if (TOKEN_TIME.test(message)) throw new DomainError('timestamp_out_of_tolerance', 'the OIDC token is expired or not yet valid');
    if (/audience/i.test(message)) throw new DomainError('invalid_signature', 'the OIDC token is for another audience');
    if (/issuer/i.test(message)) throw new DomainError('invalid_signature', 'the OIDC token has another issuer');
    throw new DomainError('invalid_signature', 'the OIDC token is not valid');
  }
  if (expected.serviceAccount && (claims?.email !== expected.serviceAccount || claims.email_verified !== true)) {
    throw new DomainError('invalid_signature', 'the OIDC token is for another service account');
  }
  const body = parseJson(delivery.body);
  return { body, data: messageData(body) };
}

/** `message.data`, base64-decoded, and parsed when it is JSON (else the decoded text); null when absent. */
export function messageData(body: unknown): unknown {
  const data = (body as { message?: { data?: unknown } } | null)?.message?.data;
  if (typeof data !== 'string') return null;
  const text = Buffer.from(data, 'base64').toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
