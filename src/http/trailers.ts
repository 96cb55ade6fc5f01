/**
 * Which trailer fields the proxy passes on. RFC 9110 §6.5.1: "Many fields cannot be
 * processed outside the header section because their evaluation is necessary prior to
 * receiving the content, such as those that describe message framing, routing,
 * authentication, request modifiers, response controls, or content format", and §6.5.2:
 * a recipient that merges or forwards trailers must not let them act like those header
 * fields. A lenient back end may still merge a trailer into its headers, so these are
 * dropped rather than forwarded; everything else is kept.
 *
 * Classified like header-names.ts: compare the length first, then the bytes,
 * case-insensitively through the LOWER table.
 */
import { LOWER, ascii } from './tables'

const DROPPED: readonly string[] = [
  // framing and connection management (RFC 9112 §6, §9; RFC 9110 §7.6.1)
  'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade',
  // routing and forwarding (RFC 9110 §7.2, §7.6.2, §7.6.3; RFC 7239)
  'host', 'max-forwards', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'via',
  // authentication (RFC 9110 §11)
  'authorization', 'proxy-authorization', 'proxy-authenticate', 'www-authenticate',
  // state (RFC 6265)
  'set-cookie', 'cookie',
  // request modifiers: conditionals, ranges, expectations (RFC 9110 §13, §14, §10.1.1)
  'range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-range', 'expect',
  // response control and caching (RFC 9110 §10.2; RFC 9111 §5)
  'cache-control', 'expires', 'date', 'age', 'location', 'retry-after', 'vary', 'warning', 'pragma',
  // content format (RFC 9110 §8)
  'content-encoding', 'content-type', 'content-range', 'content-location',
]

// byLength[n]: the dropped names with n bytes, lower case
const byLength: Uint8Array[][] = []
for (const name of DROPPED) (byLength[name.length] ??= []).push(ascii(name))

/** The names dropped from trailer sections, lower case (for tests and docs). */
export const DROPPED_TRAILER_NAMES: readonly string[] = DROPPED

/** True when the field name buf[start, end) must not be forwarded in a trailer section. */
export function isDroppedTrailer (buf: Uint8Array, start: number, end: number): boolean {
  const candidates = byLength[end - start]
  if (candidates === undefined) return false
  outer:
  for (let c = 0; c < candidates.length; c++) {
    const name = candidates[c]
    for (let i = 0; i < name.length; i++) if (LOWER[buf[start + i]] !== name[i]) continue outer
    return true
  }
  return false
}
