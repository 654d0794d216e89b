// Faults on demand, seeded and reproducible: error bursts, connection resets, and replies lost after
// the write took effect (the case that makes naive sync tools create duplicates).
import type { Random } from './random';

export type SimService = 'graph' | 'login' | 'vault' | 'exchange';

export interface FaultMatch {
  service?: SimService;
  method?: string;
  /** Operation name as in the request log, e.g. "contacts.create", or a RegExp over it. */
  operation?: string | RegExp;
  /** Request path (below the service root) must match. */
  path?: RegExp;
  /** Mailbox user id or UPN (case-insensitive). */
  mailbox?: string;
  /** Only inside $batch (true) or only outside it (false). */
  inBatch?: boolean;
}

export type FaultKind =
  | {
      kind: 'status';
      status: 500 | 502 | 503 | 504 | 429;
      retryAfterSeconds?: number;
      /** The request ran before the error came back (a gateway timeout after the write took effect). */
      executed?: boolean;
    }
  | { kind: 'reset' }
  | { kind: 'lostReply' }
  | {
      /**
       * A request Graph refuses (not throttling, not an outage): 400 ErrorInvalidRequest (or `code`,
       * e.g. ErrorInvalidIdMalformed for an id it will not read) or 403 ErrorAccessDenied. Nothing is
       * written. Without `times` it is refused for good; with it, the same item is answered normally
       * afterwards (a 403 comes in bursts on items that exist).
       */
      kind: 'refuse';
      status: 400 | 403;
      code?: string;
      message?: string;
    };

export type FaultRule = FaultKind & {
  match?: FaultMatch;
  /** How many matching operations it hits; unlimited when omitted. */
  times?: number;
  /** Chance per matching operation (seeded); 1 when omitted. */
  probability?: number;
  /** Skip this many matching operations first. */
  after?: number;
};

export interface FaultContext {
  service: SimService;
  method: string;
  operation: string;
  path: string;
  mailbox?: { id: string; upn: string } | undefined;
  inBatch: boolean;
}

interface ActiveRule {
  rule: FaultRule;
  hits: number;
  seen: number;
}

export class FaultInjector {
  private rules: ActiveRule[] = [];
  constructor(private readonly random: Random) {}

  add(rule: FaultRule): void {
    this.rules.push({ rule, hits: 0, seen: 0 });
  }

  clear(): void {
    this.rules = [];
  }

  /** How often each rule has fired, in the order added. */
  hits(): number[] {
    return this.rules.map((r) => r.hits);
  }

  pick(ctx: FaultContext): FaultKind | undefined {
    for (const active of this.rules) {
      const { rule } = active;
      if (rule.times !== undefined && active.hits >= rule.times) continue;
      if (!matches(rule.match ?? {}, ctx)) continue;
      active.seen++;
      if (rule.after !== undefined && active.seen <= rule.after) continue;
      if (rule.probability !== undefined && !this.random.chance(rule.probability)) continue;
      active.hits++;
      return rule;
    }
    return undefined;
  }
}

function matches(m: FaultMatch, ctx: FaultContext): boolean {
  if (m.service && m.service !== ctx.service) return false;
  if (m.service === undefined && ctx.service !== 'graph') return false;
  if (m.method && m.method.toUpperCase() !== ctx.method) return false;
  if (m.inBatch !== undefined && m.inBatch !== ctx.inBatch) return false;
  if (m.path && !m.path.test(ctx.path)) return false;
  if (m.operation !== undefined) {
    if (typeof m.operation === 'string' ? m.operation !== ctx.operation : !m.operation.test(ctx.operation))
      return false;
  }
  if (m.mailbox) {
    const want = m.mailbox.toLowerCase();
    if (!ctx.mailbox || (ctx.mailbox.id.toLowerCase() !== want && ctx.mailbox.upn.toLowerCase() !== want))
      return false;
  }
  return true;
}
