import { GraphRequestError } from '../../sync/ports';

interface SdkGraphError {
  statusCode?: number;
  code?: string;
  message?: string;
  requestId?: string;
  body?: unknown;
}

/** The SDK's GraphError (or a fetch failure) as our error; network failures pass through unchanged. */
export function toGraphRequestError(e: unknown): unknown {
  const g = e as SdkGraphError;
  if (e instanceof Error && typeof g.statusCode === 'number' && g.statusCode > 0) {
    let code = g.code ?? 'Unknown';
    let message = g.message ?? '';
    let requestId = g.requestId;
    if (typeof g.body === 'string') {
      try {
        const parsed = JSON.parse(g.body) as {
          error?: { code?: string; message?: string; innerError?: { 'request-id'?: string } };
        };
        code = parsed.error?.code ?? code;
        message = parsed.error?.message ?? message;
        requestId = parsed.error?.innerError?.['request-id'] ?? requestId;
      } catch {
        /* not JSON */
      }
    }
    return new GraphRequestError(
      `${code}: ${message}${requestId ? ` (request-id ${requestId})` : ''}`,
      g.statusCode,
      code,
      requestId,
    );
  }
  return e;
}

export async function graphCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw toGraphRequestError(e);
  }
}
