// Whether a policy is due: its NCRONTAB schedule (UTC) had an occurrence since it was last scheduled.
import { CronExpressionParser } from 'cron-parser';

export function lastOccurrence(schedule: string, now: Date): Date {
  return CronExpressionParser.parse(schedule, { tz: 'UTC', currentDate: new Date(now.getTime() + 1) })
    .prev()
    .toDate();
}

export function nextOccurrence(schedule: string, now: Date): Date {
  return CronExpressionParser.parse(schedule, { tz: 'UTC', currentDate: now }).next().toDate();
}

/**
 * Due when an occurrence falls after the last time the policy was scheduled (and not in the future).
 * A policy never scheduled before is due at once, so a new policy fills its mailboxes right away.
 */
export function isDue(schedule: string, lastScheduledAt: Date | null, now: Date): boolean {
  if (!lastScheduledAt) return true;
  return lastOccurrence(schedule, now).getTime() > lastScheduledAt.getTime();
}
