// DEV TOOL, not part of the product: a thin stand-in for the Azure Functions host, so the demo and the
// tests drive the real registered handlers over Azurite queues with the host's queue semantics:
// messages are received invisible, deleted on success, made visible again on failure, and moved to
// "<queue>-poison" after maxDequeueCount attempts (host.json: 5).
// First: the functions' registrations reach this stand-in host, not @azure/functions' test mode.
import { registrations } from './functions-host';
import { InvocationContext, type Timer } from '@azure/functions';
import type { QueueClient } from '@azure/storage-queue';
import { mailboxSyncHandler, mailboxSyncPoisonHandler } from '../src/functions/mailbox-syncs';
import { policyRunHandler, policyRunPoisonHandler } from '../src/functions/policy-runs';
import { schedulerTick } from '../src/functions/scheduler';
import { queueNames, type App } from '../src/app/composition';

type QueueHandler = (message: unknown, context: InvocationContext) => Promise<void>;

export interface RunnerOptions {
  maxDequeueCount: number;
  /** How long a received message stays invisible while its handler runs. */
  visibilityTimeoutSeconds: number;
  /** Messages handled at once per queue (host.json batchSize). */
  batchSize: number;
  /** Where handler log lines go; silent by default. */
  log?: (level: 'info' | 'warn' | 'error', line: string) => void;
}

export const defaultRunnerOptions: RunnerOptions = {
  maxDequeueCount: 5,
  visibilityTimeoutSeconds: 300,
  batchSize: 16,
};

interface Route {
  queue: QueueClient;
  poison: QueueClient | undefined;
  handler: QueueHandler;
  functionName: string;
}

export class LocalRunner {
  readonly stats = { handled: 0, failed: 0, poisoned: 0 };
  private readonly routes: Route[];

  constructor(
    app: App,
    private readonly options: RunnerOptions = defaultRunnerOptions,
  ) {
    const q = (name: string): QueueClient => app.queue(name);
    this.routes = [
      {
        queue: q(queueNames.policyRuns),
        poison: q(`${queueNames.policyRuns}-poison`),
        handler: policyRunHandler,
        functionName: 'policyRuns',
      },
      {
        queue: q(queueNames.mailboxSyncs),
        poison: q(`${queueNames.mailboxSyncs}-poison`),
        handler: mailboxSyncHandler,
        functionName: 'mailboxSyncs',
      },
      {
        queue: q(`${queueNames.policyRuns}-poison`),
        poison: undefined,
        handler: policyRunPoisonHandler,
        functionName: 'policyRunsPoison',
      },
      {
        queue: q(`${queueNames.mailboxSyncs}-poison`),
        poison: undefined,
        handler: mailboxSyncPoisonHandler,
        functionName: 'mailboxSyncsPoison',
      },
    ];
    this.checkRegistered();
  }

  /**
   * Each queue function the runner drives must be registered, on the queue it reads. Nothing is
   * registered when src/functions was imported before ./functions-host (tests that import handlers
   * directly): @azure/functions then stays in its test mode for the whole process, and there is
   * nothing to check.
   */
  private checkRegistered(): void {
    if (registrations.size === 0) return;
    for (const r of this.routes) {
      const registered = registrations.get(r.functionName);
      const queue = registered && Object.values(registered.bindings).find((b) => b.type === 'queueTrigger');
      if (!registered || queue?.queueName !== r.queue.name)
        throw new Error(
          `local runner: function "${r.functionName}" is not registered on queue ${r.queue.name} (registered: ${[...registrations.keys()].join(', ') || 'none'})`,
        );
    }
  }

  private context(functionName: string, dequeueCount: number, id: string): InvocationContext {
    const sink = this.options.log;
    return new InvocationContext({
      invocationId: id,
      functionName,
      triggerMetadata: { dequeueCount },
      logHandler: (level, ...args) =>
        sink?.(
          level === 'error' ? 'error' : level === 'warning' ? 'warn' : 'info',
          args.map(String).join(' '),
        ),
    });
  }

  /** One scheduler tick, as the timer would fire it. */
  async tick(): Promise<void> {
    await schedulerTick(
      { isPastDue: false, scheduleStatus: { last: '', next: '', lastUpdated: '' } } as Timer,
      this.context('scheduler', 0, `tick-${Date.now()}`),
    );
  }

  /** Receives and handles one batch from each queue; returns how many messages were handled. */
  async pollOnce(): Promise<number> {
    let handled = 0;
    await Promise.all(
      this.routes.map(async (route) => {
        const received = await route.queue.receiveMessages({
          numberOfMessages: this.options.batchSize,
          visibilityTimeout: this.options.visibilityTimeoutSeconds,
        });
        await Promise.all(
          received.receivedMessageItems.map(async (m) => {
            handled++;
            const text = Buffer.from(m.messageText, 'base64').toString('utf8');
            let payload: unknown = text;
            try {
              payload = JSON.parse(text);
            } catch {
              /* the handler reports it */
            }
            try {
              await route.handler(payload, this.context(route.functionName, m.dequeueCount, m.messageId));
              this.stats.handled++;
              await route.queue.deleteMessage(m.messageId, m.popReceipt);
            } catch (e) {
              this.stats.failed++;
              this.options.log?.(
                'warn',
                `${route.functionName}: attempt ${m.dequeueCount} failed: ${e instanceof Error ? e.message : String(e)}`,
              );
              if (m.dequeueCount >= this.options.maxDequeueCount && route.poison) {
                await route.poison.sendMessage(m.messageText);
                await route.queue.deleteMessage(m.messageId, m.popReceipt);
                this.stats.poisoned++;
              } else {
                await route.queue.updateMessage(m.messageId, m.popReceipt, undefined, 0); // visible again at once (host.json visibilityTimeout 0)
              }
            }
          }),
        );
      }),
    );
    return handled;
  }

  /** Polls until every queue is empty (including messages that are invisible for now). */
  async drain(timeoutMs = 120_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const handled = await this.pollOnce();
      if (handled === 0) {
        const counts = await Promise.all(
          this.routes.map(async (r) => (await r.queue.getProperties()).approximateMessagesCount ?? 0),
        );
        if (counts.every((c) => c === 0)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      if (Date.now() > until) throw new Error('local runner: queues did not drain in time');
    }
  }
}
