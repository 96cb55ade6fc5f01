/**
 * httpsRedirect: a plain listener that answers every request with a
 * permanent redirect to the same host and target over https (RFC 9110
 * §15.4.9: 308 keeps the method and body, unlike 301). A decision the
 * connection writes, like the other local answers.
 */
import type { HeadParser } from '../http/head-parser'

/** The 308 for this request; null when it names no host to redirect to (answered like any other request). */
export function httpsRedirectReply (p: HeadParser, portSuffix: string, close: boolean, head: boolean): Buffer | null {
  const host = p.hostName()
  if (host === '') return null
  const location = `https://${host}${portSuffix}${p.path()}`
  const body = head ? '' : `Redirecting to ${location}\n`
  return Buffer.from(
    'HTTP/1.1 308 Permanent Redirect\r\n' +
    `Location: ${location}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${head ? Buffer.byteLength(`Redirecting to ${location}\n`) : Buffer.byteLength(body)}\r\n` +
    (close ? 'Connection: close\r\n' : '') +
    '\r\n' + body, 'latin1')
}
