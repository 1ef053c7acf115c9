/**
 * `orgs export <slug>` (NDJSON to stdout) and `orgs import <file> [--as
 * <slug>]`: moving an org between databases. Export writes as fast as
 * stdout drains; import verifies the whole file before writing anything,
 * then writes it page by page into an org that goes live only at the end.
 */
import { once } from 'node:events';
import type { Config } from '../config.ts';
import { DomainError } from '../core/errors.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { exportOrg } from '../tenancy/export.ts';
import { discardImport, importOrg } from '../tenancy/import.ts';
import { fileLines } from '../tenancy/org-file.ts';
import { withApp } from './admin.ts';

const CLI_CONTEXT = { actor: PLATFORM_ACTOR, source: 'cli' } as const;

export async function runOrgsExport(config: Config, args: { slug: string }): Promise<number> {
  return withApp(
    config,
    async (app) => {
      const tenant = await app.deps.tenants.find(args.slug);
      if (!tenant) {
        process.stderr.write(`no organization ${args.slug}\n`);
        return 1;
      }
      const started = performance.now();
      const { trailer } = await exportOrg(app.deps, {
        ctx: { tenant, ...CLI_CONTEXT },
        input: {
          write: async (chunk) => {
            if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
          },
        },
      });
      const seconds = (performance.now() - started) / 1000;
      process.stderr.write(`exported ${trailer.count} signals of ${tenant.slug} in ${seconds.toFixed(1)} s (sha256 ${trailer.sha256})\n`);
      return 0;
    },
    { logToStderr: true },
  );
}

export async function runOrgsImport(config: Config, args: { file: string; as: string | undefined; json: boolean }): Promise<number> {
  return withApp(config, async (app) => {
    let lastProgress = performance.now();
    let written = 0;
    try {
      const report = await importOrg(app.deps, {
        ctx: CLI_CONTEXT,
        input: {
          lines: () => fileLines(args.file),
          ...(args.as ? { as: args.as } : {}),
          pageSize: config.SIGNALBUS_IMPORT_PAGE_SIZE,
          pageDelayMs: config.SIGNALBUS_IMPORT_PAGE_DELAY_MS,
          onProgress: (progress) => {
            written = progress.written;
            if (performance.now() - lastProgress < 5000) return;
            lastProgress = performance.now();
            process.stderr.write(`importing: ${progress.written} of ${progress.total} signals written\n`);
          },
        },
      });
      const secrets = report.secrets_to_reenter.map((secret) => `  ${secret.owner === 'org' ? '' : `${secret.owner}: `}${secret.name}`);
      process.stdout.write(
        args.json
          ? `${JSON.stringify(report, null, 2)}\n`
          : [
              `imported ${report.signals} signals as ${report.org.slug} (${report.org.id}) from ${report.source_org.slug} on ${report.source.database}` +
                (report.resumed_after > 0 ? ` (resumed after ${report.resumed_after} written by an interrupted run)` : ''),
              ...(secrets.length > 0 ? ['secrets to enter again (values are never exported):', ...secrets] : ['no secrets to enter again']),
            ].join('\n') + '\n',
      );
      return 0;
    } catch (error) {
      if (error instanceof DomainError) {
        process.stderr.write(`signalbus: import refused, nothing written: ${error.message}\n`);
        return 1;
      }
      // Committed pages stay, in an org nobody sees until the import finishes.
      process.stderr.write(
        `signalbus: import interrupted after ${written} signals: ${error instanceof Error ? error.message : String(error)}\n` +
          'the organization is not live; run the same command again to resume, or `orgs import --discard <slug>` to remove it\n',
      );
      return 1;
    }
  });
}

export async function runOrgsDiscardImport(config: Config, args: { slug: string }): Promise<number> {
  return withApp(config, async (app) => {
    try {
      const discarded = await discardImport(app.deps, args.slug);
      process.stdout.write(discarded ? `discarded the unfinished import of ${args.slug}\n` : `no unfinished import of ${args.slug}\n`);
      return 0;
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      process.stderr.write(`signalbus: ${error.message}\n`);
      return 1;
    }
  });
}
