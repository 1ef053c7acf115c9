/**
 * Kind globs: `*` matches every kind; `a.*` matches `a.b` and `a.b.c` but not
 * `a` or `ab.c`; anything else matches exactly.
 */
export function matchesKind(glob: string, kind: string): boolean {
  if (glob === '*') return true;
  if (glob.endsWith('.*')) {
    const prefix = glob.slice(0, -1);
    return kind.length > prefix.length && kind.startsWith(prefix);
  }
  return glob === kind;
}
