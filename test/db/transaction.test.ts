/**
 * `withTransaction` sends BEGIN pipelined with the first statement rather
 * than awaiting it: still one transaction from its first statement to
 * COMMIT, all or nothing, and never a silent commit of a transaction a
 * failed statement aborted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSql, type Sql } from '../../src/db/client.ts';
import { withTransaction } from '../../src/db/transaction.ts';
import { createTestDatabase, type TestDatabase } from '../support/harness.ts';

let database: TestDatabase;
let sql: Sql;

beforeAll(async () => {
  database = await createTestDatabase();
  sql = createSql(database.url, { max: 2 });
  await sql`create table ledger (id int primary key, note text not null)`;
});
afterAll(async () => {
  await sql.end({ timeout: 5 });
  await database.drop();
});

const notes = async () => (await sql<{ id: number }[]>`select id from ledger order by id`).map((row) => row.id);

describe('withTransaction', () => {
  it('runs the first statement inside the transaction, and the rest in the same one', async () => {
    const ids = await withTransaction(sql, undefined, async (tx) => {
      const [first] = await tx.sql<{ id: string | null; block: boolean }[]>`
        select pg_current_xact_id()::text as id, now() = statement_timestamp() as block`;
      await tx.sql`select pg_sleep(0.01)`;
      const [second] = await tx.sql<{ id: string; block: boolean }[]>`select pg_current_xact_id()::text as id, now() = statement_timestamp() as block`;
      return [first!, second!];
    });
    expect(ids[0]!.id).toBe(ids[1]!.id);
    // now() is the transaction's start: the second statement, later, is in the block BEGIN opened.
    expect(ids[1]!.block).toBe(false);
  });

  it('commits every statement, or none when the body throws', async () => {
    await withTransaction(sql, undefined, async (tx) => {
      await tx.sql`insert into ledger values (1, 'kept')`;
      await tx.sql`insert into ledger values (2, 'kept')`;
    });
    await expect(
      withTransaction(sql, undefined, async (tx) => {
        await tx.sql`insert into ledger values (3, 'dropped')`;
        throw new Error('the body failed');
      }),
    ).rejects.toThrow('the body failed');
    expect(await notes()).toEqual([1, 2]);
  });

  it('fails, writing nothing, when a statement failed even though the body caught it', async () => {
    await expect(
      withTransaction(sql, undefined, async (tx) => {
        await tx.sql`insert into ledger values (4, 'lost')`;
        await tx.sql`insert into ledger values (1, 'duplicate')`.catch(() => undefined);
      }),
    ).rejects.toThrow(/rolled back/);
    expect(await notes()).toEqual([1, 2]);
  });

  it('reports the failing statement, not the aborted ones pipelined after it', async () => {
    const failure = await withTransaction(sql, undefined, async (tx) => {
      await Promise.all([tx.sql`insert into ledger values (1, 'duplicate')`, tx.sql`insert into ledger values (5, 'after')`]);
    }).then(
      () => undefined,
      (error: { code?: string }) => error,
    );
    expect(failure?.code).toBe('23505');
    expect(await notes()).toEqual([1, 2]);
  });

  it('commits deferred writes with the transaction, and later statements see them', async () => {
    const seen = await withTransaction(sql, undefined, async (tx) => {
      tx.defer(tx.sql`insert into ledger values (6, 'deferred')`);
      // Sent after the deferred write, on the same connection: it runs after it.
      return (await tx.sql<{ n: number }[]>`select count(*)::int as n from ledger where id = 6`)[0]!.n;
    });
    expect(seen).toBe(1);
    expect(await notes()).toEqual([1, 2, 6]);
  });

  it("fails with the deferred write's own error, writing nothing, whether or not later statements ran", async () => {
    const failures = await Promise.all([
      withTransaction(sql, undefined, async (tx) => {
        await tx.sql`insert into ledger values (7, 'lost')`;
        tx.defer(tx.sql`insert into ledger values (1, 'duplicate')`);
      }).then(() => undefined, (error: { code?: string }) => error),
      withTransaction(sql, undefined, async (tx) => {
        tx.defer(tx.sql`insert into ledger values (1, 'duplicate')`);
        // Aborted by the deferred failure (25P02): the deferred write's error is the one reported.
        await tx.sql`insert into ledger values (8, 'lost')`;
      }).then(() => undefined, (error: { code?: string }) => error),
    ]);
    expect(failures.map((failure) => failure?.code)).toEqual(['23505', '23505']);
    expect(await notes()).toEqual([1, 2, 6]);
  });

  it('joins a transaction it is given instead of opening another', async () => {
    await withTransaction(sql, undefined, async (outer) => {
      const [before] = await outer.sql<{ id: string }[]>`select pg_current_xact_id()::text as id`;
      const inner = await withTransaction(sql, outer, async (tx) => (await tx.sql<{ id: string }[]>`select pg_current_xact_id()::text as id`)[0]!.id);
      expect(inner).toBe(before!.id);
    });
  });

  it('returns its connection to the pool after commits and failures alike', async () => {
    for (let round = 0; round < 10; round++) {
      await withTransaction(sql, undefined, async (tx) => tx.sql`select 1`);
      await withTransaction(sql, undefined, async () => {
        throw new Error('nope');
      }).catch(() => undefined);
    }
    // A pool of two: a leaked reservation would leave this waiting forever.
    const [row] = await Promise.all([sql`select 1 as one`, sql`select 1 as one`]);
    expect(row![0]!.one).toBe(1);
  });
});

describe('withTransaction when its session dies', () => {
  it('fails that transaction without crashing the process, and the pool serves the next ones', async () => {
    const killer = createSql(database.url, { max: 1 });
    let pid: number | undefined;
    const dying = withTransaction(sql, undefined, async (tx) => {
      await tx.sql`insert into ledger values (9, 'never')`;
      pid = (await tx.sql<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
      // In flight when the backend is ended, as a failover or a restart would end it.
      await tx.sql`select pg_sleep(5)`;
    }).then(
      () => undefined,
      (error: { code?: string }) => error,
    );
    while (pid === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    await killer`select pg_terminate_backend(${pid})`;
    await killer.end({ timeout: 5 });
    const failure = await dying;
    expect(failure?.code).toMatch(/^57P01$|^CONNECTION_/);
    // A write to the dead socket would have thrown from a timer and ended this process.
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (let round = 0; round < 4; round++) {
      await withTransaction(sql, undefined, async (tx) => tx.sql`select 1`);
      expect((await sql<{ one: number }[]>`select 1 as one`)[0]!.one).toBe(1);
    }
    expect(await notes()).not.toContain(9);
  });
});
