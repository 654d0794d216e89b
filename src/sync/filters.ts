// Source filters: an expression of all / any / not over attribute tests, evaluated on directory
// entries, and compiled to Graph's $filter for users where Graph can evaluate it (advanced queries
// need ConsistencyLevel: eventual and $count=true, as Graph requires).
import type { AttributeFilter, FilterExpression } from './config/schema';
import { attributeValue, type DirectoryEntry } from './directory';

/** The domain of the primary SMTP address, or null. */
export const mailDomainOf = (mail: string | null): string | null => {
  const at = mail?.lastIndexOf('@') ?? -1;
  return mail && at >= 0 ? mail.slice(at + 1).trim() || null : null;
};

function valueOf(e: DirectoryEntry, attribute: AttributeFilter['attribute']): string | null {
  return attribute === 'mailDomain' ? mailDomainOf(e.mail) : attributeValue(e, attribute);
}

/** One test, case-insensitive as the directory compares; an object without the attribute fails it. */
export function matchesFilter(e: DirectoryEntry, f: AttributeFilter): boolean {
  const v = valueOf(e, f.attribute)?.toLowerCase();
  if (v === undefined) return false;
  switch (f.op) {
    case 'equals':
      return v === f.value.toLowerCase();
    case 'in':
      return f.values.some((x) => x.toLowerCase() === v);
    case 'startsWith':
      return v.startsWith(f.value.toLowerCase());
    case 'endsWith':
      return v.endsWith(f.value.toLowerCase());
  }
}

/** A list is an implicit `all` (the flat list of earlier policy files). */
export function matchesExpression(e: DirectoryEntry, x: FilterExpression | FilterExpression[]): boolean {
  if (Array.isArray(x)) return x.every((y) => matchesExpression(e, y));
  if ('all' in x) return x.all.every((y) => matchesExpression(e, y));
  if ('any' in x) return x.any.some((y) => matchesExpression(e, y));
  if ('not' in x) return !matchesExpression(e, x.not);
  return matchesFilter(e, x);
}

/** An OData string literal: single quotes doubled. */
const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** A users' $filter and whether Graph evaluates it only as an advanced query. */
export interface CompiledFilter {
  filter: string;
  advanced: boolean;
}

function compileTest(f: AttributeFilter): CompiledFilter {
  if (f.attribute === 'mailDomain') {
    // The primary SMTP address is `mail`: its domain is what follows the @. A domain prefix has no
    // single clause (endswith is all Graph offers on mail), so startsWith is evaluated locally only.
    if (f.op === 'startsWith') throw new NotCompilable('startsWith on mailDomain');
    const suffixes =
      f.op === 'in' ? f.values.map((d) => `@${d}`) : f.op === 'equals' ? [`@${f.value}`] : [f.value];
    return { filter: suffixes.map((d) => `endswith(mail,${literal(d)})`).join(' or '), advanced: true };
  }
  const extension = f.attribute.startsWith('extensionAttribute');
  const path = extension ? `onPremisesExtensionAttributes/${f.attribute}` : f.attribute;
  switch (f.op) {
    case 'equals':
      return { filter: `${path} eq ${literal(f.value)}`, advanced: extension };
    case 'in':
      return { filter: `${path} in (${f.values.map(literal).join(',')})`, advanced: extension };
    case 'startsWith':
      return { filter: `startswith(${path},${literal(f.value)})`, advanced: extension };
    case 'endsWith':
      return { filter: `endswith(${path},${literal(f.value)})`, advanced: true };
  }
}

class NotCompilable extends Error {}

function compile(x: FilterExpression | FilterExpression[]): CompiledFilter {
  const group = (parts: FilterExpression[], op: 'and' | 'or'): CompiledFilter => {
    const compiled = parts.map(compile);
    return {
      filter: compiled.map((c) => `(${c.filter})`).join(` ${op} `),
      advanced: compiled.some((c) => c.advanced),
    };
  };
  if (Array.isArray(x)) return group(x, 'and');
  if ('all' in x) return group(x.all, 'and');
  if ('any' in x) return group(x.any, 'or');
  if ('not' in x) return { filter: `not(${compile(x.not).filter})`, advanced: true };
  return compileTest(x);
}

/** An empty list: the source is not filtered. */
export const noFilter = (x: FilterExpression | FilterExpression[]): boolean =>
  Array.isArray(x) && x.length === 0;

/**
 * The users' $filter for a source filter, or undefined when Graph cannot evaluate it (then only the
 * local evaluation counts) or there is nothing to filter.
 */
export function compileUserFilter(x: FilterExpression | FilterExpression[]): CompiledFilter | undefined {
  if (noFilter(x)) return undefined;
  try {
    return compile(x);
  } catch (e) {
    if (e instanceof NotCompilable) return undefined;
    throw e;
  }
}
