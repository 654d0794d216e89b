// HTTP errors as RFC 9457 problem details naming the field.
import type { HttpResponseInit } from '@azure/functions';
import type { z } from 'zod';

export function problem(
  status: number,
  title: string,
  detail: string,
  errors: { field: string; message: string }[] = [],
): HttpResponseInit {
  return {
    status,
    headers: { 'content-type': 'application/problem+json' },
    jsonBody: { type: 'about:blank', title, status, detail, ...(errors.length ? { errors } : {}) },
  };
}

export function validationProblem(error: z.ZodError, prefix = ''): HttpResponseInit {
  const errors = error.issues.map((i) => ({
    field: [prefix, ...i.path.map(String)].filter(Boolean).join('.') || '(body)',
    message: i.message,
  }));
  return problem(400, 'Invalid request', errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors);
}

export const json = (
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): HttpResponseInit => ({ status, jsonBody: body, headers });
