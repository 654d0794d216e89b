// The part of OData v4 query syntax Graph accepts for the resources we simulate: a $filter parser and
// evaluator ($filter=a eq 'x' and startswith(b,'y') or c in ('p','q') or coll/any(e: e/id eq 'z')),
// and $select / $top / $expand helpers. Endpoints then say which properties and operators they allow.

export type Literal = string | number | boolean | null;
export type FilterNode =
  | { type: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { type: 'not'; operand: FilterNode }
  | { type: 'compare'; op: 'eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le'; path: string[]; value: Literal }
  | { type: 'in'; path: string[]; values: Literal[] }
  | { type: 'func'; name: 'startswith' | 'endswith'; path: string[]; value: string }
  | { type: 'any'; path: string[]; variable: string; predicate: FilterNode };

export class ODataSyntaxError extends Error {}

type Token =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  | { kind: 'word'; value: string }
  | { kind: 'punct'; value: string };

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const ch: string = input[i]!;
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === "'") {
      let value = '';
      i++;
      for (;;) {
        if (i >= input.length) throw new ODataSyntaxError('unterminated string literal');
        if (input[i] === "'") {
          if (input[i + 1] === "'") {
            value += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += input[i];
        i++;
      }
      tokens.push({ kind: 'string', value });
    } else if ('(),:/'.includes(ch)) {
      tokens.push({ kind: 'punct', value: ch });
      i++;
    } else if (/[0-9-]/.test(ch)) {
      const m = /^-?\d+(\.\d+)?/.exec(input.slice(i));
      if (!m) throw new ODataSyntaxError(`unexpected '${ch}' at ${i}`);
      // A GUID literal starts with digits too.
      const guid = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/.exec(
        input.slice(i),
      );
      if (guid) {
        tokens.push({ kind: 'string', value: guid[0] });
        i += guid[0].length;
      } else {
        tokens.push({ kind: 'number', value: Number(m[0]) });
        i += m[0].length;
      }
    } else if (/[A-Za-z_@$]/.test(ch)) {
      const m = /^[A-Za-z_@$][\w.@$]*/.exec(input.slice(i))!;
      tokens.push({ kind: 'word', value: m[0] });
      i += m[0].length;
    } else {
      throw new ODataSyntaxError(`unexpected '${ch}' at ${i}`);
    }
  }
  return tokens;
}

export function parseFilter(input: string): FilterNode {
  const tokens = tokenize(input);
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];
  const isWord = (t: Token | undefined, w: string): boolean =>
    t?.kind === 'word' && t.value.toLowerCase() === w;
  const isPunct = (t: Token | undefined, p: string): boolean => t?.kind === 'punct' && t.value === p;
  const expectPunct = (p: string): void => {
    if (!isPunct(peek(), p)) throw new ODataSyntaxError(`expected '${p}'`);
    pos++;
  };
  const literal = (): Literal => {
    const t = tokens[pos++];
    if (!t) throw new ODataSyntaxError('expected a literal');
    if (t.kind === 'string' || t.kind === 'number') return t.value;
    if (t.kind === 'word') {
      const w = t.value.toLowerCase();
      if (w === 'true') return true;
      if (w === 'false') return false;
      if (w === 'null') return null;
    }
    throw new ODataSyntaxError(`expected a literal, found '${String(t.value)}'`);
  };
  // A path: word ('/' word)*, possibly ending in '/any(' which the caller handles.
  const path = (): string[] => {
    const t = tokens[pos++];
    if (t?.kind !== 'word') throw new ODataSyntaxError('expected a property name');
    const segments = [t.value];
    while (isPunct(peek(), '/') && tokens[pos + 1]?.kind === 'word') {
      const next = String(tokens[pos + 1]!.value);
      if (/^(any|all)$/i.test(next) && isPunct(tokens[pos + 2], '(')) break;
      segments.push(next);
      pos += 2;
    }
    return segments;
  };
  const primary = (): FilterNode => {
    if (isPunct(peek(), '(')) {
      pos++;
      const inner = or();
      expectPunct(')');
      return inner;
    }
    if (isWord(peek(), 'not')) {
      pos++;
      return { type: 'not', operand: primary() };
    }
    const t = peek();
    if (t?.kind === 'word' && /^(startswith|endswith)$/i.test(t.value) && isPunct(tokens[pos + 1], '(')) {
      pos += 2;
      const p = path();
      expectPunct(',');
      const v = literal();
      expectPunct(')');
      if (typeof v !== 'string') throw new ODataSyntaxError(`${t.value} needs a string`);
      return { type: 'func', name: t.value.toLowerCase() as 'startswith' | 'endswith', path: p, value: v };
    }
    const p = path();
    if (isPunct(peek(), '/')) {
      const fn = tokens[pos + 1];
      if (fn?.kind === 'word' && /^any$/i.test(fn.value)) {
        pos += 2;
        expectPunct('(');
        const variable = tokens[pos++];
        if (variable?.kind !== 'word') throw new ODataSyntaxError('expected a lambda variable');
        expectPunct(':');
        const predicate = or();
        expectPunct(')');
        return { type: 'any', path: p, variable: variable.value, predicate };
      }
      throw new ODataSyntaxError('only any() lambdas are supported');
    }
    const op = tokens[pos++];
    if (op?.kind !== 'word') throw new ODataSyntaxError('expected an operator');
    const o = op.value.toLowerCase();
    if (o === 'in') {
      expectPunct('(');
      const values = [literal()];
      while (isPunct(peek(), ',')) {
        pos++;
        values.push(literal());
      }
      expectPunct(')');
      return { type: 'in', path: p, values };
    }
    if (o === 'eq' || o === 'ne' || o === 'gt' || o === 'ge' || o === 'lt' || o === 'le') {
      return { type: 'compare', op: o, path: p, value: literal() };
    }
    throw new ODataSyntaxError(`unknown operator '${op.value}'`);
  };
  const and = (): FilterNode => {
    let left = primary();
    while (isWord(peek(), 'and')) {
      pos++;
      left = { type: 'and', left, right: primary() };
    }
    return left;
  };
  const or = (): FilterNode => {
    let left = and();
    while (isWord(peek(), 'or')) {
      pos++;
      left = { type: 'or', left, right: and() };
    }
    return left;
  };
  const node = or();
  if (pos !== tokens.length) throw new ODataSyntaxError(`unexpected '${String(tokens[pos]?.value)}'`);
  return node;
}

/** Every (path, operator) the filter uses, for endpoints to check against what Graph allows. */
export function filterUses(node: FilterNode, prefix: string[] = []): { path: string; op: string }[] {
  switch (node.type) {
    case 'and':
    case 'or':
      return [...filterUses(node.left, prefix), ...filterUses(node.right, prefix)];
    case 'not':
      return [{ path: '', op: 'not' }, ...filterUses(node.operand, prefix)];
    case 'compare':
      return [{ path: [...prefix, ...node.path].join('/'), op: node.op }];
    case 'in':
      return [{ path: [...prefix, ...node.path].join('/'), op: 'in' }];
    case 'func':
      return [{ path: [...prefix, ...node.path].join('/'), op: node.name }];
    case 'any':
      return [
        { path: node.path.join('/'), op: 'any' },
        ...filterUses(node.predicate).map((u) => ({
          path: `${node.path.join('/')}/${u.path.replace(new RegExp(`^${node.variable}/`), '')}`,
          op: u.op,
        })),
      ];
    default: {
      const _exhaustive: never = node;
      return _exhaustive;
    }
  }
}

type Resolve = (path: string[]) => unknown;

function compare(a: unknown, b: Literal, op: string, caseInsensitive: boolean): boolean {
  const norm = (x: unknown): unknown => (caseInsensitive && typeof x === 'string' ? x.toLowerCase() : x);
  const left = norm(a ?? null);
  const right = norm(b);
  switch (op) {
    case 'eq':
      return left === right;
    case 'ne':
      return left !== right;
    case 'gt':
      return (left as number) > (right as number);
    case 'ge':
      return (left as number) >= (right as number);
    case 'lt':
      return (left as number) < (right as number);
    case 'le':
      return (left as number) <= (right as number);
    default:
      return false;
  }
}

/**
 * Evaluates a filter against an object. String comparisons are case-insensitive, as in the directory
 * and in Exchange; a multi-valued property matches when any value does.
 */
export function evaluateFilter(node: FilterNode, resolve: Resolve, caseInsensitive = true): boolean {
  const values = (path: string[]): unknown[] => {
    const v = resolve(path);
    return Array.isArray(v) ? v : [v];
  };
  switch (node.type) {
    case 'and':
      return (
        evaluateFilter(node.left, resolve, caseInsensitive) &&
        evaluateFilter(node.right, resolve, caseInsensitive)
      );
    case 'or':
      return (
        evaluateFilter(node.left, resolve, caseInsensitive) ||
        evaluateFilter(node.right, resolve, caseInsensitive)
      );
    case 'not':
      return !evaluateFilter(node.operand, resolve, caseInsensitive);
    case 'compare':
      return values(node.path).some((v) => compare(v, node.value, node.op, caseInsensitive));
    case 'in':
      return values(node.path).some((v) => node.values.some((x) => compare(v, x, 'eq', caseInsensitive)));
    case 'func':
      return values(node.path).some((v) => {
        if (typeof v !== 'string') return false;
        const s = caseInsensitive ? v.toLowerCase() : v;
        const x = caseInsensitive ? node.value.toLowerCase() : node.value;
        return node.name === 'startswith' ? s.startsWith(x) : s.endsWith(x);
      });
    case 'any': {
      const items = resolve(node.path);
      if (!Array.isArray(items)) return false;
      return items.some((item) =>
        evaluateFilter(
          node.predicate,
          (p) => (p[0] === node.variable ? resolvePath(item, p.slice(1)) : resolve(p)),
          caseInsensitive,
        ),
      );
    }
    default: {
      const _exhaustive: never = node;
      return _exhaustive;
    }
  }
}

export function resolvePath(obj: unknown, path: string[]): unknown {
  let current: unknown = obj;
  for (const segment of path) {
    if (current === null || current === undefined) return null;
    if (Array.isArray(current)) {
      current = current.map((c) => (c as Record<string, unknown>)[segment]);
    } else {
      current = (current as Record<string, unknown>)[segment];
    }
  }
  return current;
}

/** Splits "a,b,c(x),d" at top-level commas (for $select and $expand). */
export function splitTopLevel(value: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  const last = value.slice(start).trim();
  if (last) parts.push(last);
  return parts;
}

/** `$expand=nav($filter=...)` into { name, filter }. */
export function parseExpand(value: string): { name: string; filter?: string }[] {
  return splitTopLevel(value).map((part) => {
    const m = /^([\w.]+)(?:\((.*)\))?$/.exec(part);
    if (!m) throw new ODataSyntaxError(`invalid $expand '${part}'`);
    const options = m[2];
    if (!options) return { name: m[1]! };
    const filter = /^\$filter=(.*)$/i.exec(options.trim());
    if (!filter) throw new ODataSyntaxError(`unsupported $expand option '${options}'`);
    return { name: m[1]!, filter: filter[1]! };
  });
}
