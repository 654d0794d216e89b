// The CLI's queues: the Functions app's messages, kept in this process and handled by the same
// use-cases, with the host's semantics (a delay before a message is visible, a failed message tried
// again, and after `maxAttempts` handed to the poison handler).
import type { MessageTransport, QueueName } from './composition';

interface Pending {
  queue: QueueName;
  message: unknown;
  visibleAt: number;
  attempts: number;
}

export interface DrainOptions {
  /** Messages handled at once. */
  concurrency: number;
  /** Attempts before the poison handler gets the message (host.json maxDequeueCount: 5). */
  maxAttempts: number;
  /** Wait before a failed message is tried again. */
  retryDelayMs: number;
}

export type MessageHandler = (queue: QueueName, message: unknown) => Promise<void>;

export class InProcessQueues implements MessageTransport {
  private readonly pending: Pending[] = [];

  ensure(): Promise<void> {
    return Promise.resolve();
  }

  send(queue: QueueName, message: unknown, delaySeconds = 0): Promise<void> {
    // A copy, as a real queue holds: a handler that changes its message changes nothing queued.
    this.pending.push({
      queue,
      message: structuredClone(message),
      visibleAt: Date.now() + delaySeconds * 1000,
      attempts: 0,
    });
    return Promise.resolve();
  }

  /** Handles messages until none are left (handlers may send more); failures go to `poison`. */
  async drain(handle: MessageHandler, poison: MessageHandler, options: DrainOptions): Promise<void> {
    let inFlight = 0;
    const next = (): Pending | undefined => {
      const now = Date.now();
      const i = this.pending.findIndex((p) => p.visibleAt <= now);
      return i < 0 ? undefined : this.pending.splice(i, 1)[0];
    };
    const worker = async (): Promise<void> => {
      for (;;) {
        const item = next();
        if (!item) {
          if (this.pending.length === 0 && inFlight === 0) return;
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        inFlight++;
        try {
          await handle(item.queue, item.message);
        } catch {
          item.attempts++;
          if (item.attempts >= options.maxAttempts) await poison(item.queue, item.message);
          else this.pending.push({ ...item, visibleAt: Date.now() + options.retryDelayMs });
        } finally {
          inFlight--;
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
  }
}
