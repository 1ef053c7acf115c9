/**
 * The floor of `npm run bench -- hooks`: `signalbus serve` whose emit route
 * also writes, for each `stripe.charge.succeeded`, a delivery log row in the
 * signal's own transaction (an inline projection) — what a delivery's
 * signal and log row cost without anything else a hook does (signature,
 * reading the event, the installation and its secret).
 */
import type { ServerType } from '@hono/node-server';
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { newId } from '../../src/core/ids.ts';
import { serverLimits, startHttpServer } from '../../src/http/server.ts';
import type { Projection } from '../../src/projections/registry.ts';
import { createLogger } from '../../src/telemetry/logger.ts';

const deliveryRow: Projection = {
  name: 'bench_delivery_rows',
  table: 'webhook_deliveries',
  handles: (type) => type === 'stripe.charge.succeeded',
  async apply(db, tenant, signals, _prefetched, defer) {
    const rows = signals.map((signal) => ({
      id: newId('delivery'),
      installation_id: 'bench_floor',
      received_at: new Date(),
      status: 200,
      outcome: 'accepted',
      reason: null,
      detail: null,
      body_sha256: '0'.repeat(64),
      body_bytes: JSON.stringify(signal.payload).length,
      event_id: signal.dedupe_key,
      signal_id: signal.id,
    }));
    const insert = db`insert into ${db(`${tenant.schema}.webhook_deliveries`)} ${db(rows)}`;
    if (defer) defer(insert);
    else await insert;
  },
};

const config = parseConfig(process.env);
const app = await createApp(config, { databaseUrl: process.env.DATABASE_URL!, logger: createLogger(config.LOG_LEVEL), projections: [deliveryRow] });
const server: ServerType = await startHttpServer(app.http.fetch, { hostname: config.HOST, port: config.PORT, limits: serverLimits(config) });
process.once('SIGTERM', async () => {
  const closing = new Promise((resolve) => server.close(resolve));
  (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  await closing;
  await app.close();
  process.exit(0);
});
