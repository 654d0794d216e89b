import { app, type InvocationContext } from '@azure/functions';
import { getApp, queueNames } from '../app/composition';
import { logger } from '../app/logging';
import { processPoison, processPolicyRun } from '../app/use-cases';
import { InvalidMessageError } from '../sync/messages';

/** policy-runs: refresh the source once, then one message per target mailbox. */
export async function policyRunHandler(message: unknown, context: InvocationContext): Promise<void> {
  try {
    await processPolicyRun(getApp(), message, logger(context));
  } catch (e) {
    // A message that can never parse is recorded and dropped, not retried five times.
    if (e instanceof InvalidMessageError) return context.error(`dropped: ${e.message}`);
    throw e;
  }
}

/** policy-runs-poison: the run failed repeatedly; mark it failed and release the policy. */
export async function policyRunPoisonHandler(message: unknown, context: InvocationContext): Promise<void> {
  await processPoison(getApp(), message, 'policy-runs', logger(context));
}

app.storageQueue('policyRuns', {
  queueName: queueNames.policyRuns,
  connection: 'AzureWebJobsStorage',
  handler: policyRunHandler,
});
app.storageQueue('policyRunsPoison', {
  queueName: `${queueNames.policyRuns}-poison`,
  connection: 'AzureWebJobsStorage',
  handler: policyRunPoisonHandler,
});
