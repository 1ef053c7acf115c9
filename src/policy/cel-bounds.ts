/**
 * Compile-time bounds of a CEL expression: its nesting, found without
 * recursion (so no input can overflow the stack of the parser or the type
 * checker), and a static estimate of its cost. Both walk cel-js's AST, whose
 * shape is pinned with the library's exact version.
 */

/** The parts of a cel-js AST node this module reads. */
export interface CelNode {
  op: string;
  args: unknown;
  start: number;
  meta: { alternate?: CelNode; macro?: unknown; evaluate?: unknown };
  evaluate: (ev: unknown, ast: CelNode, ctx: unknown) => unknown;
}

/** Each comprehension is assumed to iterate this often when estimating (lists are data, unknown at compile time). */
export const COMPREHENSION_SIZE_HINT = 100;

export function isCelNode(value: unknown): value is CelNode {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as CelNode).op === 'string' &&
    typeof (value as CelNode).evaluate === 'function' &&
    'meta' in value
  );
}

/** The nodes a node evaluates: its operands, a macro's expansion, a comprehension's parts. */
export function childrenOf(node: CelNode): CelNode[] {
  const out: CelNode[] = [];
  const add = (value: unknown) => {
    if (isCelNode(value)) out.push(value);
    else if (Array.isArray(value)) for (const item of value) if (isCelNode(item) || Array.isArray(item)) add(item);
  };
  if (node.op === 'value') return out;
  if (node.op === 'comprehension') {
    const args = node.args as { iterable: unknown; init: unknown; step: unknown };
    add(args.iterable);
    add(args.init);
    add(args.step);
  } else add(node.args);
  if (node.meta.alternate) add(node.meta.alternate);
  return out;
}

/**
 * Offset at which brackets plus a run of unary operators nest deeper than
 * `maxDepth`, found by a linear scan before parsing: cel-js's parser recurses
 * on both, and `!!!…!x` is not caught by its own depth limit.
 */
export function lexicalNestingOverflow(text: string, maxDepth: number): number | undefined {
  let depth = 0;
  let unary = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (char === '"' || char === "'") {
      i = endOfString(text, i);
      unary = 0;
      continue;
    }
    if (char === '(' || char === '[' || char === '{') {
      depth++;
      unary = 0;
    } else if (char === ')' || char === ']' || char === '}') {
      depth = Math.max(0, depth - 1);
      unary = 0;
    } else if (char === '!' && text[i + 1] === '=') {
      i++;
      unary = 0;
    } else if (char === '!' || char === '-') unary++;
    else if (char !== ' ' && char !== '\t' && char !== '\n' && char !== '\r') unary = 0;
    if (depth + unary > maxDepth) return i;
  }
  return undefined;
}

/** Index of the quote closing the string literal opened at `open` (or the end). */
function endOfString(text: string, open: number): number {
  const quote = text[open]!;
  const prefix = text.slice(Math.max(0, open - 2), open).toLowerCase();
  const raw = prefix.endsWith('r') || prefix === 'rb' || prefix === 'br';
  const triple = text.startsWith(quote.repeat(3), open);
  const closing = triple ? quote.repeat(3) : quote;
  for (let i = open + closing.length; i < text.length; i++) {
    if (!raw && text[i] === '\\') i++;
    else if (text.startsWith(closing, i)) return i + closing.length - 1;
  }
  return text.length;
}

/** The first node nested deeper than `maxDepth` (e.g. a chain `1 + 1 + … + 1`), walked without recursion. */
export function deepestNode(root: CelNode, maxDepth: number): CelNode | undefined {
  const stack: [CelNode, number][] = [[root, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (depth > maxDepth) return node;
    for (const child of childrenOf(node)) stack.push([child, depth + 1]);
  }
  return undefined;
}

/**
 * Worst-case steps, assuming every comprehension visits
 * COMPREHENSION_SIZE_HINT elements: nesting multiplies. Only called once the
 * depth is bounded, so recursion is safe here.
 */
export function estimateCost(node: CelNode): number {
  if (node.op === 'comprehension') {
    const args = node.args as { iterable: CelNode; init: CelNode; step: CelNode };
    return 1 + estimateCost(args.iterable) + estimateCost(args.init) + COMPREHENSION_SIZE_HINT * (1 + estimateCost(args.step));
  }
  // A macro's expansion contains its arguments; count them once.
  if (node.meta.alternate) return 1 + estimateCost(node.meta.alternate);
  let cost = 1;
  for (const child of childrenOf(node)) cost += estimateCost(child);
  return cost;
}

/** The comprehension whose estimate is largest: where an error about cost points. */
export function costliestComprehension(node: CelNode): CelNode | undefined {
  let best: { node: CelNode; cost: number } | undefined;
  const stack = [node];
  while (stack.length > 0) {
    const current = stack.pop()!;
    if (current.op === 'comprehension') {
      const cost = estimateCost(current);
      if (!best || cost > best.cost) best = { node: current, cost };
    }
    stack.push(...childrenOf(current));
  }
  return best?.node;
}
