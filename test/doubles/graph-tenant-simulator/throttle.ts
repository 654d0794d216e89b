// Outlook's limits per app per mailbox: 10,000 requests per 10 minutes and 4 concurrent requests.
// Every $batch sub-request counts on its own. A time scale compresses the window for tests.

export interface ThrottleOptions {
  requestsPerWindow: number;
  windowMs: number;
  concurrentRequests: number;
  /** Divides the window and Retry-After values: 60 makes 10 minutes last 10 seconds. */
  timeScale: number;
  /** Retry-After (seconds, before scaling) for a concurrency rejection. */
  concurrencyRetryAfterSeconds: number;
}

export const defaultThrottleOptions: ThrottleOptions = {
  requestsPerWindow: 10_000,
  windowMs: 600_000,
  concurrentRequests: 4,
  timeScale: 1,
  concurrencyRetryAfterSeconds: 1,
};

export type ThrottleDecision =
  | { ok: true; release: () => void }
  | { ok: false; reason: 'MailboxConcurrency' | 'MailboxRequestLimit'; retryAfterSeconds: number };

interface MailboxBudget {
  /** Timestamps of admitted requests within the window (oldest first). */
  admitted: number[];
  head: number;
  inFlight: number;
}

export class MailboxThrottle {
  private readonly budgets = new Map<string, MailboxBudget>();
  constructor(
    public options: ThrottleOptions,
    private readonly now: () => number = Date.now,
  ) {}

  admit(appId: string, mailboxId: string): ThrottleDecision {
    const key = `${appId}|${mailboxId}`;
    let b = this.budgets.get(key);
    if (!b) {
      b = { admitted: [], head: 0, inFlight: 0 };
      this.budgets.set(key, b);
    }
    const now = this.now();
    const window = this.options.windowMs / this.options.timeScale;
    while (b.head < b.admitted.length && (b.admitted[b.head] ?? 0) <= now - window) b.head++;
    if (b.head > 1024) {
      b.admitted = b.admitted.slice(b.head);
      b.head = 0;
    }
    if (b.inFlight >= this.options.concurrentRequests) {
      return {
        ok: false,
        reason: 'MailboxConcurrency',
        retryAfterSeconds: round(this.options.concurrencyRetryAfterSeconds / this.options.timeScale),
      };
    }
    if (b.admitted.length - b.head >= this.options.requestsPerWindow) {
      const oldest = b.admitted[b.head] ?? now;
      return {
        ok: false,
        reason: 'MailboxRequestLimit',
        retryAfterSeconds: Math.max(0.001, round((oldest + window - now) / 1000)),
      };
    }
    b.admitted.push(now);
    b.inFlight++;
    const budget = b;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (!released) {
          released = true;
          budget.inFlight--;
        }
      },
    };
  }

  reset(): void {
    this.budgets.clear();
  }
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
