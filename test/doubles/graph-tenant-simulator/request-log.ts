// Every request the simulator answered, so tests and benchmarks can assert on traffic.
import type { SimService } from './faults';

export interface LoggedRequest {
  seq: number;
  at: number;
  service: SimService;
  appId: string | null;
  method: string;
  path: string;
  operation: string;
  mailbox: string | null;
  status: number;
  errorCode: string | null;
  inBatch: boolean;
  requestId: string;
  /** True when the reply was deliberately dropped (fault injection). */
  replyLost: boolean;
}

export interface TrafficSummary {
  /** HTTP calls received (a $batch counts once). */
  httpCalls: number;
  /** Graph requests as throttling counts them: $batch sub-requests each, the $batch envelope not. */
  graphRequests: number;
  byOperation: Record<string, number>;
  byStatus: Record<string, number>;
  byMailbox: Record<string, number>;
  throttled: number;
}

export class RequestLog {
  private readonly entries: LoggedRequest[] = [];
  private seq = 0;

  add(entry: Omit<LoggedRequest, 'seq' | 'at'>): LoggedRequest {
    const full = { ...entry, seq: ++this.seq, at: Date.now() };
    this.entries.push(full);
    return full;
  }

  all(): readonly LoggedRequest[] {
    return this.entries;
  }

  since(seq: number): LoggedRequest[] {
    return this.entries.filter((e) => e.seq > seq);
  }

  get lastSeq(): number {
    return this.seq;
  }

  count(
    filter: Partial<
      Pick<LoggedRequest, 'service' | 'operation' | 'status' | 'mailbox' | 'inBatch' | 'method'>
    > = {},
    sinceSeq = 0,
  ): number {
    return this.entries.filter(
      (e) =>
        e.seq > sinceSeq &&
        Object.entries(filter).every(([k, v]) => (e as unknown as Record<string, unknown>)[k] === v),
    ).length;
  }

  summary(sinceSeq = 0): TrafficSummary {
    const s: TrafficSummary = {
      httpCalls: 0,
      graphRequests: 0,
      byOperation: {},
      byStatus: {},
      byMailbox: {},
      throttled: 0,
    };
    for (const e of this.entries) {
      if (e.seq <= sinceSeq || e.service !== 'graph') continue;
      if (!e.inBatch) s.httpCalls++;
      if (e.operation !== 'batch') s.graphRequests++;
      s.byOperation[e.operation] = (s.byOperation[e.operation] ?? 0) + 1;
      s.byStatus[String(e.status)] = (s.byStatus[String(e.status)] ?? 0) + 1;
      if (e.mailbox) s.byMailbox[e.mailbox] = (s.byMailbox[e.mailbox] ?? 0) + 1;
      if (e.status === 429) s.throttled++;
    }
    return s;
  }

  clear(): void {
    this.entries.length = 0;
  }
}
