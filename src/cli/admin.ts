/** `orgs create`, `keys create` and `keys rotate-encryption`: the same verbs the HTTP API calls, with platform authority. */
import pino from 'pino';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { createApiKey } from '../auth/api-keys.ts';
import { Role } from '../auth/roles.ts';
import { createApp, type SignalbusApp } from '../app.ts';
import type { Config } from '../config.ts';
import { createLogger } from '../telemetry/logger.ts';
import { CreateOrgInput, provisionOrg } from '../tenancy/provision.ts';
import { orgView } from '../tenancy/tenant.ts';
import { resolveDatabase } from './database.ts';
import { resolveMasterKeys } from './master-keys.ts';
import { rotateEncryption } from '../secrets/vault.ts';

/** Runs `fn` with an app on the command's database; logs go to stderr when stdout carries the command's output. */
export async function withApp<T>(
  config: Config,
  fn: (app: SignalbusApp) => Promise<T>,
  { vault = false, logToStderr = false } = {},
): Promise<T> {
  const logger = createLogger(config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL, logToStderr ? pino.destination(2) : undefined);
  const database = await resolveDatabase(config, (message) => logger.info(message));
  try {
    const masterKeys = vault ? await resolveMasterKeys(config, database) : undefined;
    const app = await createApp(config, { databaseUrl: database.url, logger, ...(masterKeys ? { masterKeys } : {}) });
    try {
      return await fn(app);
    } finally {
      await app.close();
    }
  } finally {
    await database.stop();
  }
}

function print(value: unknown, json: boolean, human: string) {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human}\n`);
}

export async function runOrgsCreate(config: Config, args: { slug: string; name: string; json: boolean }): Promise<number> {
  const input = CreateOrgInput.safeParse({ slug: args.slug, name: args.name });
  if (!input.success) {
    process.stderr.write(`${input.error.issues.map((issue) => issue.message).join('\n')}\n`);
    return 2;
  }
  return withApp(config, async (app) => {
    const { tenant, created } = await provisionOrg(app.deps, { input: input.data });
    const { secret } = await createApiKey(app.deps, {
      tenant,
      input: { name: 'admin', role: 'admin', actor: { type: 'human', id: 'admin' } },
      by: PLATFORM_ACTOR,
    });
    print({ org: orgView(tenant), admin_key: secret }, args.json, [
      `${created ? 'created' : 'found'} organization ${tenant.slug} (${tenant.id})`,
      `admin key: ${secret}`,
    ].join('\n'));
    return 0;
  });
}

export async function runKeysCreate(
  config: Config,
  args: { org: string | undefined; role: string; name: string | undefined; json: boolean },
): Promise<number> {
  const role = Role.safeParse(args.role);
  if (!role.success) {
    process.stderr.write(`unknown role ${args.role}\n`);
    return 2;
  }
  return withApp(config, async (app) => {
    const tenant = args.org ? await app.deps.tenants.find(args.org) : null;
    if (args.org && !tenant) {
      process.stderr.write(`no organization ${args.org}\n`);
      return 1;
    }
    const { apiKey, secret } = await createApiKey(app.deps, {
      tenant: tenant ?? null,
      input: { name: args.name ?? role.data, role: role.data },
      by: PLATFORM_ACTOR,
    });
    print({ api_key: apiKey, secret }, args.json, `created ${apiKey.role} key ${apiKey.id}\nsecret: ${secret}`);
    return 0;
  });
}

/** `keys rotate-encryption`: re-wraps every secret's data key under the first master key. */
export async function runRotateEncryption(config: Config, args: { json: boolean }): Promise<number> {
  return withApp(
    config,
    async (app) => {
      const report = await rotateEncryption(app.deps.vault);
      print(report, args.json, `re-wrapped ${report.rewrapped} secrets in ${report.orgs} organizations under ${report.current_kid}`);
      return 0;
    },
    { vault: true },
  );
}
