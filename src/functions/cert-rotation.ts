import { app, type InvocationContext, type Timer } from '@azure/functions';
import { getApp } from '../app/composition';
import { logger } from '../app/logging';
import { rotateCertificates } from '../app/cert-rotation';

/**
 * Daily (CERTIFICATE_ROTATION_SCHEDULE): roll a certificate Key Vault renewed onto the application and
 * remove the old key after the overlap. Every step is idempotent; a failed day is retried the next.
 */
export async function certificateRotationTick(_timer: Timer, context: InvocationContext): Promise<void> {
  const outcomes = await rotateCertificates(getApp(), logger(context));
  const problems = outcomes.filter((o) => o.problem);
  if (problems.length > 0)
    throw new Error(
      `certificate rotation: ${problems.map((o) => `${o.connection}: ${o.problem}`).join('; ')}`,
    );
}

app.timer('certificate-rotation', {
  schedule: '%CERTIFICATE_ROTATION_SCHEDULE%',
  handler: certificateRotationTick,
});
