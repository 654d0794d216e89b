// One worker per mailbox at a time: a lease row (ETag-guarded, with an expiry) beside the mailbox's
// state, so two deliveries of the same mailbox never interleave their writes.
import type { TableClient } from '@azure/data-tables';
import { mailboxPartition } from './table-key';

const lockKey = '~lock';
const status = (e: unknown): number | undefined => (e as { statusCode?: number }).statusCode;

export class MailboxLocks {
  constructor(private readonly table: TableClient) {}

  async tryLock(
    policyId: string,
    mailboxId: string,
    owner: string,
    until: Date,
    now: Date,
  ): Promise<boolean> {
    const partitionKey = mailboxPartition(policyId, mailboxId);
    for (let attempt = 0; attempt < 5; attempt++) {
      let existing: { owner: string; until: string; etag: string } | undefined;
      try {
        existing = await this.table.getEntity<{ owner: string; until: string }>(partitionKey, lockKey);
      } catch (e) {
        if (status(e) !== 404) throw e;
      }
      if (existing && existing.owner !== owner && new Date(existing.until).getTime() > now.getTime())
        return false;
      const entity = { partitionKey, rowKey: lockKey, owner, until: until.toISOString() };
      try {
        if (existing) await this.table.updateEntity(entity, 'Replace', { etag: existing.etag });
        else await this.table.createEntity(entity);
        return true;
      } catch (e) {
        if (status(e) !== 412 && status(e) !== 409) throw e;
      }
    }
    return false;
  }

  /**
   * Renews the lock every `everyMs` while a pass runs (each renewal holds it `ttlMs` more), so a pass
   * slowed by throttling never outlives its lock. `stop` ends the renewals and waits for one in flight.
   * A renewal that fails is retried at the next tick; the lock's own expiry still bounds a dead worker.
   */
  keepLocked(
    policyId: string,
    mailboxId: string,
    owner: string,
    ttlMs: number,
    everyMs: number,
    now: () => Date = () => new Date(),
  ): { stop(): Promise<void> } {
    let renewing: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      renewing = renewing.then(() => {
        const at = now();
        return this.tryLock(policyId, mailboxId, owner, new Date(at.getTime() + ttlMs), at).catch(
          () => false,
        );
      });
    }, everyMs);
    timer.unref();
    return {
      stop: async () => {
        clearInterval(timer);
        await renewing;
      },
    };
  }

  async unlock(policyId: string, mailboxId: string, owner: string): Promise<void> {
    const partitionKey = mailboxPartition(policyId, mailboxId);
    try {
      const existing = await this.table.getEntity<{ owner: string }>(partitionKey, lockKey);
      if (existing.owner === owner)
        await this.table.deleteEntity(partitionKey, lockKey, { etag: existing.etag });
    } catch (e) {
      if (status(e) !== 404 && status(e) !== 412) throw e;
    }
  }
}
