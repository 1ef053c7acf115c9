/**
 * Where the embedded cluster's binaries and data live when signalbus runs as
 * root. PostgreSQL refuses to run as root, so the cluster runs as the
 * `postgres` user — who cannot enter a checkout inside a directory only root
 * may enter (a clone in /root, a `mktemp -d` folder). Then the binaries are
 * copied, once per version, and the data kept under /var/lib/signalbus, in a
 * folder named after the data dir so every later command finds it again.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';

export const SHARED_ROOT = '/var/lib/signalbus';

export interface Binaries {
  initdb: string;
  postgres: string;
}

export interface PostgresUser {
  uid: number;
  gid: number;
}

/** True when `user` can search `target` (a directory) or run it (a file), every directory above it included. */
export function reachableBy(user: PostgresUser, target: string): boolean {
  return spawnSync('test', ['-x', target], { uid: user.uid, gid: user.gid, cwd: '/', stdio: 'ignore' }).status === 0;
}

/** The folder that holds the cluster of `dataDir` when `postgres` cannot reach `dataDir`: readable name, short hash of the path. */
export function clusterHome(dataDir: string): string {
  const name = `${path.basename(path.dirname(dataDir))}-${path.basename(dataDir)}`
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  const hash = createHash('sha256').update(dataDir).digest('hex').slice(0, 10);
  return path.join(SHARED_ROOT, `${name || 'data'}-${hash}`);
}

function sharedRoot(): void {
  mkdirSync(SHARED_ROOT, { recursive: true, mode: 0o755 });
  chmodSync(SHARED_ROOT, 0o755);
}

/**
 * The binaries as `user` can run them: where npm put them when reachable,
 * else a copy per package version under /var/lib/signalbus, owned by root and
 * read-only to `postgres`. The copy is made beside its place and renamed
 * into it, so concurrent first commands never see half a copy.
 */
export function runnableBinaries(binaries: Binaries, user: PostgresUser, log: (message: string) => void): Binaries {
  if (reachableBy(user, binaries.initdb) && reachableBy(user, binaries.postgres)) return binaries;
  const native = path.dirname(path.dirname(binaries.initdb));
  const pkg = JSON.parse(readFileSync(path.join(native, '..', 'package.json'), 'utf8')) as { name: string; version: string };
  const target = path.join(SHARED_ROOT, `${pkg.name.replace(/^@/, '').replace(/\//g, '-')}-${pkg.version}`);
  if (!existsSync(target)) {
    sharedRoot();
    const staging = `${target}.${process.pid}.tmp`;
    rmSync(staging, { recursive: true, force: true });
    cpSync(native, staging, { recursive: true, verbatimSymlinks: true });
    // Others may read and run, none but root may change what root starts.
    execFileSync('chmod', ['-R', 'u=rwX,go=rX', staging]);
    try {
      renameSync(staging, target);
      log(`copied the embedded PostgreSQL binaries to ${target}, where the postgres user can run them`);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      if (!existsSync(target)) throw error;
    }
  }
  const relative = (file: string) => path.join(target, path.relative(native, file));
  return { initdb: relative(binaries.initdb), postgres: relative(binaries.postgres) };
}

/**
 * The cluster directory for a new cluster of `dataDir`: `<dataDir>/pg` when
 * `user` can reach it (the data dir itself is opened to it), else `pg` in the
 * data dir's own folder under /var/lib/signalbus, owned by `user`, mode 0700.
 */
export function newClusterDirectory(dataDir: string, user: PostgresUser | undefined): string {
  if (!user) return path.join(dataDir, 'pg');
  if (reachableBy(user, path.dirname(dataDir))) {
    chmodSync(dataDir, 0o755);
    return path.join(dataDir, 'pg');
  }
  sharedRoot();
  const home = clusterHome(dataDir);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  chmodSync(home, 0o700);
  chownSync(home, user.uid, user.gid);
  return path.join(home, 'pg');
}
