import { app, type InvocationContext } from '@azure/functions';
import { getApp, queueNames } from '../app/composition';
import { logger } from '../app/logging';
import { processMailboxSync, processPoison } from '../app/use-cases';
import { InvalidMessageError } from '../sync/messages';

/** mailbox-syncs: sync one mailbox within the time budget. */
export async function mailboxSyncHandler(message: unknown, context: InvocationContext): Promise<void> {
  try {
    await processMailboxSync(getApp(), message, logger(context), context.invocationId);
  } catch (e) {
    if (e instanceof InvalidMessageError) return context.error(`dropped: ${e.message}`);
    throw e;
  }
}

/** mailbox-syncs-poison: the mailbox failed 5 times; record it failed on its run with the last error. */
export async function mailboxSyncPoisonHandler(message: unknown, context: InvocationContext): Promise<void> {
  await processPoison(getApp(), message, 'mailbox-syncs', logger(context));
}

app.storageQueue('mailboxSyncs', {
  queueName: queueNames.mailboxSyncs,
  connection: 'AzureWebJobsStorage',
  handler: mailboxSyncHandler,
});
app.storageQueue('mailboxSyncsPoison', {
  queueName: `${queueNames.mailboxSyncs}-poison`,
  connection: 'AzureWebJobsStorage',
  handler: mailboxSyncPoisonHandler,
});
