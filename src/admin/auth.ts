/**
 * Bearer-token check for the admin listener (RFC 6750 §2.1:
 * `Authorization: Bearer <token>`). Both sides are hashed to SHA-256 before
 * timingSafeEqual, so the comparison takes the same time whatever the length
 * or content of the guess, and the token's length does not leak either.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type * as http from 'node:http'

function digest (value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

export class TokenCheck {
  private readonly expected: Buffer

  constructor (token: string) {
    this.expected = digest(token)
  }

  matches (candidate: string | null): boolean {
    // still hash and compare on a missing token: no early return to time
    const ok = timingSafeEqual(digest(candidate ?? ''), this.expected)
    return ok && candidate !== null
  }
}

/** The token from `Authorization: Bearer <token>`, or null. The scheme is case-insensitive (RFC 9110 §11.1). */
export function bearerToken (req: http.IncomingMessage): string | null {
  const header = req.headers.authorization
  if (header === undefined) return null
  const match = /^Bearer +([!-~]+) *$/i.exec(header)
  return match === null ? null : match[1]
}
