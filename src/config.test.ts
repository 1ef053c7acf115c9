import { describe, expect, it } from 'vitest';
import { celLimitsOf, ConfigError, parseConfig } from './config.ts';
import { DEFAULT_CEL_LIMITS } from './policy/cel-program.ts';

/** Parses `env` expecting a ConfigError, and returns it. */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    parseConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`parseConfig accepted ${JSON.stringify(env)}`);
}

describe('parseConfig', () => {
  it('applies the defaults of the API.md configuration table to an empty environment', () => {
    const config = parseConfig({});
    expect(config.DATABASE_URL).toBeUndefined(); // unset → embedded PostgreSQL
    expect(config.SIGNALBUS_DATA_DIR).toBe('.data');
    expect(config.HOST).toBe('0.0.0.0');
    expect(config.PORT).toBe(3000);
    expect(config.SIGNALBUS_ENCRYPTION_KEYS).toBeUndefined();
    expect(config.SIGNALBUS_ALLOW_PRIVATE_TARGETS).toBe(false);
    expect(config.SIGNALBUS_STRIPE_API_BASE).toBeUndefined();
    expect(config.SIGNALBUS_OPENAI_BASE_URL).toBeUndefined();
    expect(config.SIGNALBUS_GOOGLE_API_BASE).toBeUndefined();
    expect(config.SIGNALBUS_GOOGLE_OAUTH_BASE).toBeUndefined();
    expect(config.LOG_LEVEL).toBe('info');
  });

  it('treats empty strings as unset, as a shell `VAR=` does', () => {
    const config = parseConfig({ PORT: '', DATABASE_URL: '', LOG_LEVEL: '', SIGNALBUS_ALLOW_PRIVATE_TARGETS: '' });
    expect(config.PORT).toBe(3000);
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.LOG_LEVEL).toBe('info');
    expect(config.SIGNALBUS_ALLOW_PRIVATE_TARGETS).toBe(false);
  });

  it('ignores variables it does not know, such as the rest of process.env', () => {
    const config = parseConfig({ PATH: '/usr/bin', HOME: '/root', PORT: '8080' });
    expect(config.PORT).toBe(8080);
    expect(config).not.toHaveProperty('PATH');
  });

  it('reads every documented variable', () => {
    const config = parseConfig({
      DATABASE_URL: 'postgresql://app:secret@db.internal:5432/signalbus',
      SIGNALBUS_DATA_DIR: '/var/lib/signalbus',
      HOST: '127.0.0.1',
      PORT: '0',
      SIGNALBUS_ENCRYPTION_KEYS: `k1:${'A'.repeat(43)}=,k0:${'B'.repeat(43)}=`,
      SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true',
      SIGNALBUS_STRIPE_API_BASE: 'http://127.0.0.1:4010',
      SIGNALBUS_OPENAI_BASE_URL: 'https://openai.example/v1',
      SIGNALBUS_GOOGLE_API_BASE: 'http://127.0.0.1:4011',
      SIGNALBUS_GOOGLE_OAUTH_BASE: 'http://127.0.0.1:4012',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      DATABASE_URL: 'postgresql://app:secret@db.internal:5432/signalbus',
      SIGNALBUS_DATA_DIR: '/var/lib/signalbus',
      HOST: '127.0.0.1',
      PORT: 0,
      SIGNALBUS_ENCRYPTION_KEYS: `k1:${'A'.repeat(43)}=,k0:${'B'.repeat(43)}=`,
      SIGNALBUS_ALLOW_PRIVATE_TARGETS: true,
      SIGNALBUS_STRIPE_API_BASE: 'http://127.0.0.1:4010',
      SIGNALBUS_OPENAI_BASE_URL: 'https://openai.example/v1',
      SIGNALBUS_GOOGLE_API_BASE: 'http://127.0.0.1:4011',
      SIGNALBUS_GOOGLE_OAUTH_BASE: 'http://127.0.0.1:4012',
      LOG_LEVEL: 'debug',
    });
  });

  it('reads SIGNALBUS_PUBLIC_URL without its trailing slash, a path prefix kept; refuses a query or another scheme', () => {
    expect(parseConfig({}).SIGNALBUS_PUBLIC_URL).toBeUndefined();
    expect(parseConfig({ SIGNALBUS_PUBLIC_URL: 'https://bus.example.com/' }).SIGNALBUS_PUBLIC_URL).toBe('https://bus.example.com');
    expect(parseConfig({ SIGNALBUS_PUBLIC_URL: 'https://example.com/signalbus/' }).SIGNALBUS_PUBLIC_URL).toBe('https://example.com/signalbus');
    for (const value of ['https://bus.example.com/?a=1', 'ftp://bus.example.com', 'bus.example.com']) {
      expect(configError({ SIGNALBUS_PUBLIC_URL: value }).issues, value).toEqual([expect.stringMatching(/^SIGNALBUS_PUBLIC_URL: /)]);
    }
  });

  it.each([
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ])('reads SIGNALBUS_ALLOW_PRIVATE_TARGETS=%s as %s', (value, expected) => {
    expect(parseConfig({ SIGNALBUS_ALLOW_PRIVATE_TARGETS: value }).SIGNALBUS_ALLOW_PRIVATE_TARGETS).toBe(expected);
  });

  it.each([
    ['PORT', 'notanumber'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['DATABASE_URL', 'mysql://root@localhost/app'],
    ['SIGNALBUS_ALLOW_PRIVATE_TARGETS', 'maybe'],
    ['SIGNALBUS_STRIPE_API_BASE', 'not a url'],
    ['SIGNALBUS_OPENAI_BASE_URL', 'ftp://files.example'],
    ['LOG_LEVEL', 'verbose'],
    ['SIGNALBUS_DB_POOL_SIZE', '0'],
    ['SIGNALBUS_ENCRYPTION_KEYS', 'k1:AAAA'],
    ['SIGNALBUS_ENCRYPTION_KEYS', `no-kid-${'A'.repeat(43)}=`],
    ['SIGNALBUS_ENCRYPTION_KEYS', `k1:${'A'.repeat(43)}=,k1:${'B'.repeat(43)}=`],
  ])('refuses %s=%s with a ConfigError naming the variable', (name, value) => {
    const error = configError({ [name]: value });
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]).toMatch(new RegExp(`^${name}: `));
    expect(error.message).toContain(name);
  });

  it('reads SIGNALBUS_OPENAI_PRICES as JSON model prices', () => {
    const config = parseConfig({ SIGNALBUS_OPENAI_PRICES: '{"gpt-4o-mini":{"input_per_1m":0.15,"output_per_1m":0.6},"local-llm":{"input_per_1m":0,"output_per_1m":0}}' });
    expect(config.SIGNALBUS_OPENAI_PRICES).toEqual({
      'gpt-4o-mini': { input_per_1m: 0.15, output_per_1m: 0.6 },
      'local-llm': { input_per_1m: 0, output_per_1m: 0 },
    });
    expect(parseConfig({}).SIGNALBUS_OPENAI_PRICES).toBeUndefined();
  });

  it.each([
    ['not JSON', '{"gpt-4o":'],
    ['an array', '[]'],
    ['a negative price', '{"gpt-4o":{"input_per_1m":-1,"output_per_1m":10}}'],
    ['a missing price', '{"gpt-4o":{"input_per_1m":2.5}}'],
    ['an unknown field', '{"gpt-4o":{"input_per_1m":2.5,"output_per_1m":10,"cached_per_1m":1}}'],
  ])('refuses SIGNALBUS_OPENAI_PRICES that is %s, naming the variable', (_what, value) => {
    const error = configError({ SIGNALBUS_OPENAI_PRICES: value });
    expect(error.issues.length).toBeGreaterThan(0);
    for (const issue of error.issues) expect(issue).toMatch(/^SIGNALBUS_OPENAI_PRICES: /);
  });

  it('names every bad variable at once, so one run shows everything to fix', () => {
    const error = configError({ PORT: 'eighty', LOG_LEVEL: 'loud', HOST: '127.0.0.1' });
    expect(error.issues.map((issue) => issue.split(':')[0]).sort()).toEqual(['LOG_LEVEL', 'PORT']);
    expect(error.message).toMatch(/PORT/);
    expect(error.message).toMatch(/LOG_LEVEL/);
    expect(error.message).not.toMatch(/HOST/);
  });

  it('does not echo a bad DATABASE_URL, which may carry a password', () => {
    const error = configError({ DATABASE_URL: 'mysql://root:hunter2@localhost/app' });
    expect(error.message).toContain('DATABASE_URL');
    expect(error.message).not.toContain('hunter2');
  });

  it('reads the CEL limits, defaulting to those of the engine, and refuses values outside their bounds', () => {
    expect(celLimitsOf(parseConfig({}))).toEqual(DEFAULT_CEL_LIMITS);
    expect(celLimitsOf(parseConfig({ SIGNALBUS_CEL_MAX_LENGTH: '2000', SIGNALBUS_CEL_MAX_DEPTH: '16', SIGNALBUS_CEL_MAX_COST: '50000', SIGNALBUS_CEL_TIMEOUT_MS: '20' }))).toEqual({
      maxLength: 2000,
      maxDepth: 16,
      maxCost: 50_000,
      timeoutMs: 20,
    });
    const error = configError({ SIGNALBUS_CEL_MAX_DEPTH: '1000', SIGNALBUS_CEL_TIMEOUT_MS: '0', SIGNALBUS_CEL_MAX_COST: 'lots', SIGNALBUS_CEL_MAX_LENGTH: '10' });
    expect(error.issues.map((issue) => issue.split(':')[0]).sort()).toEqual([
      'SIGNALBUS_CEL_MAX_COST',
      'SIGNALBUS_CEL_MAX_DEPTH',
      'SIGNALBUS_CEL_MAX_LENGTH',
      'SIGNALBUS_CEL_TIMEOUT_MS',
    ]);
  });
});
