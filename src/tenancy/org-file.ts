/**
 * The org export file: NDJSON, one header line, one line per signal in
 * position order, one trailer line. The trailer carries the count of signal
 * lines and the sha256 of every line before it (header included, each with
 * its newline), so a flipped byte, a lost line or a cut-off file is caught
 * before an import writes anything.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { DomainError } from '../core/errors.ts';

export const EXPORT_FORMAT = 'signalbus.org-export';
export const EXPORT_VERSION = 1;

export const ExportHeader = z.object({
  format: z.literal(EXPORT_FORMAT),
  version: z.literal(EXPORT_VERSION),
  org: z.object({ id: z.string(), slug: z.string(), name: z.string(), status: z.string(), created_at: z.string() }),
  /** The database it came from: enough to tell two sources apart, nothing to reach them. */
  source: z.object({ database: z.string(), system_identifier: z.string().nullable(), server_version: z.string() }),
  /** The tenant schema's migration version at the source: an older codebase cannot import a newer log. */
  schema_version: z.number().int().min(0),
  /** Source positions of the first and last signal exported (null when none), and the horizon read below. */
  positions: z.object({ first: z.string().nullable(), last: z.string().nullable() }),
  /** The names of the secrets the org had; their values never leave the vault. */
  secrets: z.array(z.object({ owner: z.string(), name: z.string() })),
  exported_at: z.string(),
});
export type ExportHeader = z.infer<typeof ExportHeader>;

export const ExportTrailer = z.object({
  format: z.literal(`${EXPORT_FORMAT}.end`),
  count: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type ExportTrailer = z.infer<typeof ExportTrailer>;

/** The fields of a signal line an import needs; the database parses the rest (payloads keep their exact numbers). */
export const ExportedSignal = z.object({
  id: z.string().min(1),
  position: z.string(),
  type: z.string().min(1),
  dedupe_key: z.string().min(1),
  payload: z.record(z.string(), z.unknown()),
  actor: z.object({ type: z.string(), id: z.string() }).loose(),
  source: z.string(),
  payload_hash: z.string(),
  occurred_at: z.string(),
  recorded_at: z.string(),
});

/** Hashes the lines before the trailer as written: each line's UTF-8 and its newline. */
export function lineHasher() {
  const hash = createHash('sha256');
  return {
    add(line: string) {
      hash.update(line);
      hash.update('\n');
    },
    hex: () => hash.digest('hex'),
  };
}

const refused = (message: string) => new DomainError('validation_failed', `the export file is refused: ${message}`);

function parseLine<T>(schema: z.ZodType<T>, line: string, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw refused(`${what} is not JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw refused(`${what} is not valid (${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')})`);
  return parsed.data;
}

export interface VerifiedFile {
  header: ExportHeader;
  trailer: ExportTrailer;
}

/**
 * Reads the whole file once, holding one line at a time: the header must be
 * first, the trailer last, every line between a signal, and the count and
 * sha256 must match. Throws `validation_failed` naming what is wrong.
 */
export async function verifyExportLines(lines: AsyncIterable<string>): Promise<VerifiedFile> {
  const hash = lineHasher();
  let header: ExportHeader | undefined;
  let pending: string | undefined;
  let count = 0;
  let index = 0;
  for await (const line of lines) {
    index++;
    if (pending !== undefined) {
      // The line held back was not the last: it is a signal.
      parseLine(ExportedSignal, pending, `line ${index - 1}`);
      hash.add(pending);
      count++;
    }
    if (!header) {
      header = parseLine(ExportHeader, line, 'the header (line 1)');
      hash.add(line);
      continue;
    }
    pending = line;
  }
  if (!header) throw refused('it is empty');
  if (pending === undefined) throw refused('the trailer is missing');
  let trailer: ExportTrailer;
  try {
    trailer = parseLine(ExportTrailer, pending, 'the last line');
  } catch {
    throw refused('the trailer is missing: the last line is not one (a cut-off file?)');
  }
  if (trailer.count !== count) throw refused(`the trailer counts ${trailer.count} signals, the file holds ${count}`);
  if (trailer.sha256 !== hash.hex()) throw refused('its sha256 does not match the trailer: the file was changed or damaged');
  return { header, trailer };
}

/** The file's lines, read as a stream (memory holds one line, not the file). */
export async function* fileLines(path: string): AsyncIterable<string> {
  const input = createReadStream(path, { encoding: 'utf8' });
  try {
    yield* createInterface({ input, crlfDelay: Infinity });
  } finally {
    input.destroy();
  }
}
