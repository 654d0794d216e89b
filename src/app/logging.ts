// Every log line carries policy, run and mailbox, so one query in Application Insights follows a run.
export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export interface LogFields {
  policy?: string;
  run?: string;
  mailbox?: string;
  [key: string]: unknown;
}

interface Sink {
  log(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export function logger(sink: Sink, base: LogFields = {}): Logger {
  const line = (message: string, fields: LogFields = {}): string => {
    const all = { ...base, ...fields };
    const tags = (['policy', 'run', 'mailbox'] as const)
      .map((k) => `${k}=${all[k] === undefined ? '-' : String(all[k])}`)
      .join(' ');
    const extra = Object.entries(all).filter(
      ([k, v]) => !['policy', 'run', 'mailbox'].includes(k) && v !== undefined,
    );
    return `[${tags}] ${message}${extra.length ? ' ' + JSON.stringify(Object.fromEntries(extra)) : ''}`;
  };
  return {
    info: (m, f) => sink.log(line(m, f)),
    warn: (m, f) => sink.warn(line(m, f)),
    error: (m, f) => sink.error(line(m, f)),
  };
}
