/**
 * `npm run fakes`: the four fake providers the tests use (Stripe, Gmail with
 * its OAuth token endpoint, OpenAI, a Standard Webhooks receiver), served on
 * fixed loopback ports for local demos. Prints where they are, the exact
 * environment lines that point signalbus at them, and the credentials each
 * one accepts; then logs every call it receives until SIGINT or SIGTERM.
 *
 * Ports: stripe = base, gmail = base + 1, openai = base + 2, webhook = base + 3,
 * base 12111 unless `FAKES_PORT_BASE` or `--port-base N` says otherwise; each
 * one can be set alone with `--stripe-port`, `--gmail-port`, `--openai-port`,
 * `--webhook-port`. `--webhook-secret whsec_…` (or `FAKES_WEBHOOK_SECRET`)
 * replaces the demo signing secret.
 */
import { parseArgs } from 'node:util';
import { startGmailFake, type GmailFake } from '../test/fakes/gmail.ts';
import { FAKE_OPENAI_KEY, startOpenAIFake, type OpenAIFake } from '../test/fakes/openai.ts';
import { startStripeFake, type StripeFake } from '../test/fakes/stripe.ts';
import { startWebhookSink, type WebhookSink } from '../test/fakes/webhook-sink.ts';

const DEFAULT_PORT_BASE = 12111;
/** Demo credentials: fixed so a vault filled once keeps working across restarts. Never real ones. */
const DEMO = {
  stripeApiKey: 'sk_test_signalbus_fake',
  openaiApiKey: FAKE_OPENAI_KEY,
  gmail: { client_id: 'fake-client-id.apps.googleusercontent.com', client_secret: 'fake-client-secret', refresh_token: 'fake-refresh-token' },
  webhookSigningSecret: `whsec_${Buffer.from('signalbus-demo-webhook-signing-secret').toString('base64')}`,
};

function portOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    console.error(`${name} must be a port number (1-65535), not ${JSON.stringify(value)}`);
    process.exit(2);
  }
  return port;
}

const { values: args } = parseArgs({
  options: {
    'port-base': { type: 'string' },
    'stripe-port': { type: 'string' },
    'gmail-port': { type: 'string' },
    'openai-port': { type: 'string' },
    'webhook-port': { type: 'string' },
    'webhook-secret': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  console.log('usage: npm run fakes -- [--port-base N] [--stripe-port N] [--gmail-port N] [--openai-port N] [--webhook-port N] [--webhook-secret whsec_…]');
  process.exit(0);
}

const base = portOption('--port-base', args['port-base']) ?? portOption('FAKES_PORT_BASE', process.env.FAKES_PORT_BASE) ?? DEFAULT_PORT_BASE;
const ports = {
  stripe: portOption('--stripe-port', args['stripe-port']) ?? base,
  gmail: portOption('--gmail-port', args['gmail-port']) ?? base + 1,
  openai: portOption('--openai-port', args['openai-port']) ?? base + 2,
  webhook: portOption('--webhook-port', args['webhook-port']) ?? base + 3,
};
if (Math.max(...Object.values(ports)) > 65_535) {
  console.error(`--port-base ${base} leaves no room for four ports`);
  process.exit(2);
}
const webhookSecret = args['webhook-secret'] ?? process.env.FAKES_WEBHOOK_SECRET ?? DEMO.webhookSigningSecret;

// The fakes' servers report a failed listen (a port in use) as an 'error'
// event nobody listens to: say which port, not a stack trace.
process.on('uncaughtException', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EADDRINUSE' || error.code === 'EACCES') {
    console.error(`cannot listen on 127.0.0.1:${(error as { port?: number }).port ?? '?'} (${error.code}); choose other ports with --port-base or FAKES_PORT_BASE`);
  } else {
    console.error(error);
  }
  process.exit(1);
});

let stripe: StripeFake;
let gmail: GmailFake;
let openai: OpenAIFake;
let sink: WebhookSink;
try {
  [stripe, gmail, openai, sink] = await Promise.all([
    startStripeFake({ port: ports.stripe, apiKeys: [DEMO.stripeApiKey] }),
    startGmailFake({ port: ports.gmail, clientId: DEMO.gmail.client_id, clientSecret: DEMO.gmail.client_secret, refreshTokens: [DEMO.gmail.refresh_token] }),
    startOpenAIFake({ port: ports.openai, apiKey: DEMO.openaiApiKey }),
    startWebhookSink({ port: ports.webhook, secret: webhookSecret }),
  ]);
} catch (error) {
  // The webhook sink refuses a signing secret that is not whsec_ + base64.
  console.error(`could not start the fakes: ${(error as Error).message}`);
  process.exit(1);
}

const gmailOauth = JSON.stringify(DEMO.gmail);
console.log(`signalbus fake providers, on loopback:

  stripe    ${stripe.url}  (every pi_/ch_/cus_ id exists but those ending in _missing)
  gmail     ${gmail.url}  (Gmail API under /gmail/v1, OAuth token endpoint at /token)
  openai    ${openai.baseUrl}  (POST /chat/completions)
  webhooks  ${sink.url}  (any path; verifies Standard Webhooks signatures, 401 otherwise)

Point signalbus at them:

SIGNALBUS_STRIPE_API_BASE=${stripe.url}
SIGNALBUS_OPENAI_BASE_URL=${openai.baseUrl}
SIGNALBUS_GOOGLE_API_BASE=${gmail.url}
SIGNALBUS_GOOGLE_OAUTH_BASE=${gmail.url}
SIGNALBUS_ALLOW_PRIVATE_TARGETS=true

Credentials they accept (PUT /v1/orgs/<org>/secrets/<name> {"value": "…"}):

  stripe_api_key          ${DEMO.stripeApiKey}
  openai_api_key          ${DEMO.openaiApiKey}
  gmail_oauth             ${gmailOauth}
  webhook_signing_secret  ${webhookSecret}

For example:
  curl -X PUT "$SIGNALBUS_URL/v1/orgs/<org>/secrets/gmail_oauth" -H "authorization: Bearer <admin key>" \\
    -H 'content-type: application/json' -d '${JSON.stringify({ value: gmailOauth })}'

Calls are logged below. Ctrl-C stops.
`);

/**
 * Logs what arrived since the last look. The fakes keep records rather than
 * emit events, so this reads their records on a short interval.
 */
const seen = { stripe: 0, gmail: 0, openai: 0, webhook: 0, rejected: 0 };
function logActivity() {
  const at = () => new Date().toISOString().slice(11, 23);
  for (const call of stripe.calls.slice(seen.stripe)) {
    console.log(`${at()} stripe   ${call.method} /v1/${call.path} → ${call.status}${call.replayed ? ' (replayed)' : ''}${call.idempotencyKey ? ` key=${call.idempotencyKey}` : ''}`);
  }
  seen.stripe = stripe.calls.length;
  for (const call of gmail.calls.slice(seen.gmail)) console.log(`${at()} gmail    ${call.method} ${call.path} → ${call.status}`);
  seen.gmail = gmail.calls.length;
  for (const request of openai.requests.slice(seen.openai)) console.log(`${at()} openai   POST /v1/chat/completions model=${request.body.model ?? '?'} → ${request.status}`);
  seen.openai = openai.requests.length;
  for (const delivery of sink.deliveries.slice(seen.webhook)) console.log(`${at()} webhook  POST ${delivery.path} webhook-id=${delivery.webhookId} → ${delivery.status}`);
  seen.webhook = sink.deliveries.length;
  if (sink.calls.rejected > seen.rejected) console.log(`${at()} webhook  ${sink.calls.rejected - seen.rejected} request(s) refused: bad signature (401)`);
  seen.rejected = sink.calls.rejected;
}
const ticker = setInterval(logActivity, 200);

let stopping = false;
async function stop(signal: string) {
  if (stopping) {
    console.error('stopping already; exiting now');
    process.exit(1);
  }
  stopping = true;
  clearInterval(ticker);
  logActivity();
  console.log(`\n${signal}: closing the fakes`);
  await Promise.all([stripe.close(), gmail.close(), openai.close(), sink.close()]);
  console.log(
    `served: stripe ${stripe.calls.length} call(s), gmail ${gmail.calls.length}, openai ${openai.calls.chatCompletions}, webhooks ${sink.calls.requests}`,
  );
  process.exit(0);
}
// A second signal while closing forces the exit (see `stop`).
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
