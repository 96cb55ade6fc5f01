/**
 * httpsRedirect: a plain listener that answers every request with a
 * permanent redirect to the same host and target over https (RFC 9110
 * §15.4.9: 308 keeps the method and body, unlike 301). A decision the
 * connection writes, like the other local answers.
 */
import type { HeadParser } from '../http/head-parser'

/**
 * The 308 for this request; null when it names no host to redirect to (answered like any other request).
 * `extra`: more field lines (the request ID's).
 */
export function httpsRedirectReply (p: HeadParser, portSuffix: string, close: boolean, head: boolean, extra = ''): Buffer | null {
  const host = p.hostName()
  if (host === '') return null
  const location = `https://${host}${portSuffix}${p.path()}`
  const body = head ? '' : `Redirecting to ${location}\n`
  return Buffer.from(
    'HTTP/1.1 308 Permanent Redirect\r\n' +
    `Location: ${location}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${head ? Buffer.byteLength(`Redirecting to ${location}\n`) : Buffer.byteLength(body)}\r\n` +
    (close ? 'Connection: close\r\n' : '') + extra +
    '\r\n' + body, 'latin1')
}

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/'

/**
 * The HTTP-01 answer for a challenge path (200 with the key authorization, 404 for an unknown token); null for
 * any other path. `extra`: more field lines (the request ID's).
 */
export function acmeChallengeReply (p: HeadParser, challenges: ReadonlyMap<string, string>, close: boolean, head: boolean, extra = ''): { status: number, bytes: Buffer } | null {
  const path = p.path()
  if (!path.startsWith(CHALLENGE_PREFIX)) return null
  const keyAuthorization = challenges.get(path.slice(CHALLENGE_PREFIX.length))
  const status = keyAuthorization === undefined ? 404 : 200
  const body = keyAuthorization ?? 'no such ACME challenge\n'
  return {
    status,
    bytes: Buffer.from(
      `HTTP/1.1 ${status === 200 ? '200 OK' : '404 Not Found'}\r\n` +
      'Content-Type: text/plain\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Cache-Control: no-store\r\n' +
      (close ? 'Connection: close\r\n' : '') + extra +
      '\r\n' + (head ? '' : body), 'latin1'),
  }
}
