/** Identifiers and secrets: request ids, API tokens and their hashes. */
import { createHash, randomBytes, randomUUID } from 'node:crypto';

export function newRequestId(): string {
  return randomUUID();
}

/** A short random id for names in tests and node ids. */
export function randomId(bytes = 4): string {
  return randomBytes(bytes).toString('hex');
}

/** A new API token: 32 random bytes, prefixed so it is recognisable in a leaked log. */
export function newToken(): string {
  return `pier_${randomBytes(32).toString('base64url')}`;
}

/** Tokens are high-entropy, so a plain SHA-256 is the right hash (no salt or KDF needed). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
