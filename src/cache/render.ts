/**
 * A stored entry as it goes to the client: the stored head with Age
 * (RFC 9111 §5.1), X-Cache and Cache-Status (RFC 9211), as a 304 when the
 * client's own validators match, or as a 206 / 416 for a Range request
 * (RFC 9110 §14). Hits replay the stored head as one latin1 slice; only the
 * 304 and range answers rewrite its lines.
 */
import type { CacheEntry } from './entry'
import { storedLines, lineName } from './stored-head'
import type { ByteRange } from './range'

/** A response rendered from the cache: head fields without the final CRLF, and the body to send. */
export class CachedResponse {
  status = 0
  head = ''
  body: Buffer | null = null
}

const ONLY_IF_CACHED_BODY = Buffer.from('504 Gateway Timeout: not in the cache\n', 'latin1')
const ONLY_IF_CACHED_HEAD = 'HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n' +
  `Content-Length: ${ONLY_IF_CACHED_BODY.length}\r\nCache-Control: no-store\r\n` +
  'Cache-Status: switchyard; fwd=miss; detail=only-if-cached\r\n'

/**
 * RFC 9111 §5.2.1.7: only-if-cached and nothing stored we may use. A HEAD
 * gets the same head, Content-Length included, and no body (RFC 9110 §9.3.2).
 */
export function renderOnlyIfCached (head: boolean, out: CachedResponse): CachedResponse {
  out.status = 504
  out.head = ONLY_IF_CACHED_HEAD
  out.body = head ? null : ONLY_IF_CACHED_BODY
  return out
}

/** Fields a 304 carries from the stored 200 (RFC 9110 §15.4.5). */
const NOT_MODIFIED_FIELDS = new Set(['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified'])

/** Cache-Status of a fresh hit (RFC 9211 §2.1 hit, §2.4 ttl: remaining freshness in seconds). */
export function cacheStatusHit (e: CacheEntry, collapsed: boolean): string {
  const ttl = Math.floor((e.freshForMs - e.currentAgeMs) / 1000)
  return collapsed ? 'switchyard; hit; ttl=' + ttl + '; collapsed' : 'switchyard; hit; ttl=' + ttl
}

/** The stored response as it goes to the client, with Age, X-Cache and Cache-Status (RFC 9111 §5.1, RFC 9211). */
export function renderStored (e: CacheEntry, xCache: string, cacheStatus: string, notModified: boolean, head: boolean,
  out: CachedResponse): CachedResponse {
  const ageSec = Math.floor(e.currentAgeMs / 1000)
  if (notModified) {
    const lines = storedLines(e.head)
    let text = 'HTTP/1.1 304 Not Modified\r\n'
    for (let i = 1; i < lines.length; i++) if (NOT_MODIFIED_FIELDS.has(lineName(lines[i]))) text += lines[i] + '\r\n'
    out.head = text
    out.status = 304
  } else {
    out.head = e.head.latin1Slice(0, e.head.length - 2) // without the final CRLF
    out.status = e.status
  }
  out.head += 'Age: ' + ageSec + '\r\nX-Cache: ' + xCache + '\r\nCache-Status: ' + cacheStatus + '\r\n'
  out.body = notModified || head || e.body.length === 0 ? null : e.body
  return out
}

/**
 * A Range answer from a complete stored 200 (RFC 9110 §14): `range` given, a
 * 206 with Content-Range and that part of the body (§15.3.7: the stored
 * fields, Content-Length of the part); null, a 416 whose Content-Range gives
 * "*" for the range and the stored length (§15.5.17), and no body.
 */
export function renderPartial (e: CacheEntry, range: ByteRange | null, xCache: string, cacheStatus: string, out: CachedResponse): CachedResponse {
  const length = e.body.length
  const tail = 'Age: ' + Math.floor(e.currentAgeMs / 1000) + '\r\nX-Cache: ' + xCache + '\r\nCache-Status: ' + cacheStatus + '\r\n'
  if (range === null) {
    out.status = 416
    out.head = 'HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */' + length + '\r\nContent-Length: 0\r\n' + tail
    out.body = null
    return out
  }
  const lines = storedLines(e.head)
  let text = 'HTTP/1.1 206 Partial Content\r\n'
  for (let i = 1; i < lines.length; i++) {
    const name = lineName(lines[i])
    if (name !== 'content-length' && name !== 'content-range') text += lines[i] + '\r\n'
  }
  const size = range.last - range.first + 1
  out.status = 206
  out.head = text + 'Content-Range: bytes ' + range.first + '-' + range.last + '/' + length + '\r\nContent-Length: ' + size + '\r\n' + tail
  out.body = size === 0 ? null : e.body.subarray(range.first, range.last + 1)
  return out
}
