// Shapes shared by the simulated services: a parsed request, a response, Graph's error body.
import { randomUUID } from 'node:crypto';

export interface SimRequest {
  method: string;
  /** Path below the service root, without the version segment, e.g. /users/{id}/contacts. */
  path: string;
  query: URLSearchParams;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: unknown;
  rawBody: Buffer;
  requestId: string;
  inBatch: boolean;
}

export interface SimResponse {
  status: number;
  headers?: Record<string, string>;
  /** JSON value, or raw bytes (with a content-type header). */
  body?: unknown;
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): SimResponse {
  return { status, body, headers };
}

/** Graph's error body: { error: { code, message, innerError: { date, request-id, client-request-id } } }. */
export function graphError(
  status: number,
  code: string,
  message: string,
  requestId: string = randomUUID(),
  headers: Record<string, string> = {},
): SimResponse {
  return {
    status,
    headers,
    body: {
      error: {
        code,
        message,
        innerError: {
          date: new Date().toISOString().replace(/\.\d+Z$/, ''),
          'request-id': requestId,
          'client-request-id': requestId,
        },
      },
    },
  };
}

/** Thrown by handlers to answer with a Graph error. */
export class GraphFault extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const notFoundItem = (): GraphFault =>
  new GraphFault(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
export const badRequest = (message: string, code = 'BadRequest'): GraphFault =>
  new GraphFault(400, code, message);
