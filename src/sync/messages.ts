// Queue messages are untrusted input: parsed with zod, and one that can never parse is recorded and
// dropped instead of being retried five times. They carry ids only: what a run may do (dry run, full
// resync) and which mailboxes it covers live in the run record, written under the policy's lease.
import { z } from 'zod';

/** Our policy ids (the policy file's rule): never a `/`, `#`, `?` or `'` that could reach a Table key. */
export const policyIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'must be a policy id (letters, digits, - and _)');
/** Our run ids are random GUIDs. */
export const runIdSchema = z.uuid({ error: 'must be a run id (GUID)' });
/** Entra object ids (a mailbox's user id) are GUIDs. */
export const objectIdSchema = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a GUID');

/** Requested mailboxes per run (an HTTP request or the CLI's --mailbox). */
export const maxRequestedMailboxes = 1000;

export const runOptionsSchema = z.strictObject({
  dryRun: z.boolean().default(false),
  /** A full resync ignores the deletion threshold and re-reads the directory in full. */
  fullResync: z.boolean().default(false),
  mailboxes: z
    .array(
      z
        .string()
        .max(320, 'at most 320 characters')
        .regex(/^[^@\s]+@[^@\s]+$/, 'must be a user principal name'),
    )
    .max(maxRequestedMailboxes)
    .default([]),
});
export type RunOptions = z.output<typeof runOptionsSchema>;

export const policyRunMessage = z.strictObject({
  kind: z.literal('policy-run'),
  policyId: policyIdSchema,
  runId: runIdSchema,
});
export type PolicyRunMessage = z.output<typeof policyRunMessage>;

/** A queue message holds 64 KiB; what we send is checked against this before it is sent. */
export const maxQueueMessageBytes = 64 * 1024;

/** Time-budget continuations of one mailbox; the one that would pass it fails the mailbox instead. */
export const maxContinuations = 1000;

export const mailboxSyncMessage = z
  .strictObject({
    kind: z.literal('mailbox-sync'),
    policyId: policyIdSchema,
    runId: runIdSchema,
    mailboxId: objectIdSchema,
    /**
     * Earlier versions carried a continuation's number and counts, and the run's pre-read contacts
     * delta, here. Accepted, so a message queued before an upgrade still runs, and ignored: a forged
     * one could inflate the report, fail a mailbox at once, or name removals and another mailbox's
     * deltaLink. The run's Table rows hold them now (RunStore.mailboxProgress, preReadDrift).
     */
    continuation: z.unknown().optional(),
    carried: z.unknown().optional(),
    drift: z.unknown().optional(),
  })
  .transform(({ kind, policyId, runId, mailboxId }) => ({ kind, policyId, runId, mailboxId }));
export type MailboxSyncMessage = z.output<typeof mailboxSyncMessage>;

export class InvalidMessageError extends Error {}

/** The runtime hands queue items as string or already-parsed JSON; both are accepted. */
export function parseMessage<T extends z.ZodType>(schema: T, raw: unknown, queue: string): z.output<T> {
  let value: unknown = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      throw new InvalidMessageError(`${queue}: message is not JSON`);
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidMessageError(
      `${queue}: ${issue?.path.join('.') || '(message)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}
