/** Turns every failure into `{"error":{"code","message"}}` with the right status; 5xx bodies say only `internal error`. */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { PierError, httpStatusFor, type ErrorCode } from '../core/errors.js';
import { mapDbError } from '../db/index.js';
import { PATTERN_HINTS } from '../protocol/index.js';

interface AjvIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** One line naming the first invalid field of a request part (body, params, querystring). */
export function describeValidation(part: string, issues: AjvIssue[]): string {
  const issue = issues[0];
  if (!issue) return `invalid ${part}`;
  const where = part + issue.instancePath.replaceAll('/', '.');
  switch (issue.keyword) {
    case 'required':
      return `${where}.${String(issue.params.missingProperty)} is required`;
    case 'additionalProperties':
      return `${where} has an unknown field '${String(issue.params.additionalProperty)}'`;
    case 'pattern': {
      const hint = PATTERN_HINTS[String(issue.params.pattern)];
      return `${where} ${hint ?? issue.message ?? 'is invalid'}`;
    }
    case 'type':
      return `${where} must be ${String(issue.params.type)}`;
    default:
      return `${where} ${issue.message ?? 'is invalid'}`;
  }
}

export function sendError(reply: FastifyReply, code: ErrorCode, message: string, details?: Record<string, unknown>, status = httpStatusFor(code)): FastifyReply {
  const error: Record<string, unknown> = { code, message };
  if (details !== undefined) error.details = details;
  return reply.status(status).type('application/json').send({ error });
}

export function errorHandler(log: Logger) {
  return (raw: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    // A driver error that slipped past the db layer (a lost or refused connection) is still "database unavailable".
    const err = mapDbError(raw) as FastifyError;
    if (err instanceof PierError) {
      if (err.code === 'PIER_INTERNAL') log.error({ err, url: request.url }, 'request failed');
      return sendError(reply, err.code, err.message, err.details);
    }
    if (err.validation) {
      return sendError(reply, 'PIER_VALIDATION', describeValidation(err.validationContext ?? 'request', err.validation as AjvIssue[]));
    }
    const status = err.statusCode ?? 500;
    if (status === 413) return sendError(reply, 'PIER_TOO_LARGE', 'request body is too large');
    if (status === 415) return sendError(reply, 'PIER_BAD_REQUEST', `unsupported content type '${request.headers['content-type'] ?? ''}'; send application/json`, undefined, 415);
    if (status >= 400 && status < 500) {
      const message = err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError ? 'malformed JSON body' : lowerFirst(err.message);
      return sendError(reply, 'PIER_BAD_REQUEST', message, undefined, status);
    }
    log.error({ err, url: request.url }, 'request failed');
    return sendError(reply, 'PIER_INTERNAL', 'internal error');
  };
}

function lowerFirst(s: string): string {
  return (s.charAt(0).toLowerCase() + s.slice(1)).split('\n')[0]!.replace(/\.$/, '');
}
