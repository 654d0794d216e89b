import { app, type InvocationContext, type Timer } from '@azure/functions';
import { getApp } from '../app/composition';
import { logger } from '../app/logging';
import { scheduleDuePolicies } from '../app/use-cases';

/** Every minute (SCHEDULER_SCHEDULE): start a run for each enabled policy that is due. */
export async function schedulerTick(_timer: Timer, context: InvocationContext): Promise<void> {
  const result = await scheduleDuePolicies(getApp(), logger(context));
  if (result.started.length + result.refused.length > 0)
    context.log(
      `scheduler: started ${result.started.join(', ') || 'none'}; refused ${result.refused.join(', ') || 'none'}`,
    );
}

app.timer('scheduler', { schedule: '%SCHEDULER_SCHEDULE%', handler: schedulerTick });
