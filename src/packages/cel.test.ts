import { describe, expect, it } from 'vitest';
import { CelBudgetExceeded } from '../policy/cel-program.ts';
import { compileManifestCel } from './cel.ts';

const signal = (payload: Record<string, unknown>) => ({ signal: { id: 'sig_1', type: 't.x', payload }, config: {}, installation: { id: 'ins_1', package: 'p', version: '1.0.0' } });

describe('manifest CEL runs on the bounded engine', () => {
  it('matches with RE2, refusing a pattern RE2 cannot run with its position', () => {
    const compiled = compileManifestCel('signal.payload.s.matches("^(a+)+$")', 'handler', 'bool');
    if (!compiled.ok) throw new Error(compiled.message);
    expect(compiled.program(signal({ s: `${'a'.repeat(28)}b` }))).toBe(false);
    const refused = compileManifestCel('signal.payload.s.matches("(?=a)")', 'handler', 'bool');
    expect(refused).toMatchObject({ ok: false, line: 1, column: 26 });
    expect(refused.ok || refused.message).toMatch(/^invalid regular expression \(RE2 syntax\)/);
  });

  it('stops a run past the budget with the expression, for the run to fail with it', () => {
    const text = 'signal.payload.l.all(a, signal.payload.l.all(b, a + b >= 0))';
    const compiled = compileManifestCel(text, 'handler', 'bool');
    if (!compiled.ok) throw new Error(compiled.message);
    const l = Array.from({ length: 1000 }, (_, i) => BigInt(i));
    expect(() => compiled.program(signal({ l }))).toThrow(CelBudgetExceeded);
    try {
      compiled.program(signal({ l }));
    } catch (error) {
      expect((error as CelBudgetExceeded).expression).toBe(text);
    }
  });

  it('refuses expressions nested too deep or estimated too costly, with their position', () => {
    expect(compileManifestCel(`${'('.repeat(40)}true${')'.repeat(40)}`, 'handler', 'bool')).toMatchObject({ ok: false, offset: 32 });
    const costly = compileManifestCel('signal.payload.l.all(a, signal.payload.l.all(b, signal.payload.l.all(c, true)))', 'projection', 'bool');
    expect(costly.ok || costly.message).toMatch(/^the expression's estimated cost \d+ exceeds/);
  });

  it('still knows the fields of signal: a misspelt one is refused', () => {
    expect(compileManifestCel('signal.paylod.x == 1', 'handler', 'bool')).toMatchObject({ ok: false });
  });
});
