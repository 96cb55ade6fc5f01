/**
 * Heads the proxy writes: the request it forwards upstream, the response head
 * it relays to the client, and the head the cache stores. Field lines are
 * copied from the received bytes range by range, except:
 *
 * - framing and routing are the proxy's own (RFC 9112 §6.3, §3.2): the
 *   Content-Length line carries the canonical value the parser read (no
 *   leading zeros, duplicates dropped), a Transfer-Encoding line says exactly
 *   `chunked` when the proxy re-chunks the body (and is dropped when it does
 *   not), and Host is the authority the request is for (an absolute-form
 *   target's authority replaces a conflicting Host, RFC 9112 §3.2.2);
 * - hop-by-hop fields go (RFC 9110 §7.6.1): Connection and the fields it
 *   names, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade unless
 *   upgrading, HTTP2-Settings. A Connection option naming Content-Length,
 *   Transfer-Encoding or Host is ignored (§7.6.1: a sender must not send one;
 *   honouring it would let a client or an upstream remove the framing the
 *   proxy computed, which is request smuggling);
 * - X-Forwarded-For, X-Forwarded-Proto, Forwarded and Via are rewritten with
 *   this hop appended.
 *
 * One Buffer.allocUnsafe per head, one write.
 */
import type { HeadParser } from './head-parser'
import {
  H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE, H_HTTP2_SETTINGS,
  H_X_FORWARDED_FOR, H_X_FORWARDED_PROTO, H_FORWARDED, H_VIA, H_AGE, H_CONTENT_LENGTH, H_TRANSFER_ENCODING, H_HOST, H_EXPECT,
} from './header-names'
import { LOWER } from './tables'

const KINDS = 32
// fields that are hop-by-hop, or that the proxy rewrites itself
const DROP_REQUEST = new Uint8Array(KINDS)
for (const k of [H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE, H_HTTP2_SETTINGS, H_X_FORWARDED_FOR, H_X_FORWARDED_PROTO, H_FORWARDED, H_VIA]) DROP_REQUEST[k] = 1
// an HTTP/1.0 request goes on as HTTP/1.1: its Expect is dropped (RFC 9110 §10.1.1: a 100-continue
// expectation in an HTTP/1.0 request MUST be ignored), where forwarded it would become one
const DROP_REQUEST_10 = DROP_REQUEST.slice()
DROP_REQUEST_10[H_EXPECT] = 1
const DROP_RESPONSE = new Uint8Array(KINDS)
for (const k of [H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE, H_HTTP2_SETTINGS, H_VIA]) DROP_RESPONSE[k] = 1
// what a stored response leaves out: hop-by-hop, and what the cache sets itself on every hit (Age, Via)
const DROP_STORED = new Uint8Array(KINDS)
for (const k of [H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE, H_HTTP2_SETTINGS, H_VIA, H_AGE]) DROP_STORED[k] = 1

/** What the Transfer-Encoding line of an outgoing head says. */
export type TransferFraming = 'chunked' | 'drop'

/** How an outgoing head's framing and routing lines are written (see writeFields). */
interface FieldPlan {
  drop: Uint8Array
  /** Keep Upgrade (an allowed upgrade goes through). */
  keepUpgrade: boolean
  /** Write the first Content-Length field (canonical), drop the others; false drops them all (1xx, 204). */
  contentLength: boolean
  transferEncoding: TransferFraming
  /** Replace the Host line with this authority ('' = keep the Host line as received). */
  host: string
  /** Lower-case names of other fields to drop (a route's header edits), null for none. */
  remove: readonly string[] | null
}

const plan: FieldPlan = { drop: DROP_REQUEST, keepUpgrade: false, contentLength: true, transferEncoding: 'chunked', host: '', remove: null }

/** What a route changes in the request it forwards (src/routing); null fields change nothing. */
export interface RequestEdit {
  /** The path and query to send instead of the received target (valid origin-form). */
  target: string | null
  /** The Host to send instead of the request's authority. */
  host: string | null
  /** Lower-case names of fields not to forward (the fields it sets are in `extra`). */
  remove: readonly string[] | null
}

/** Is the name of field i one of `names` (lower case)? */
function nameIn (p: HeadParser, i: number, names: readonly string[]): boolean {
  const buf = p.buf
  const ns = p.nameStart(i)
  const len = p.nameEnd(i) - ns
  outer:
  for (const name of names) {
    if (name.length !== len) continue
    for (let j = 0; j < len; j++) if (LOWER[buf[ns + j]] !== name.charCodeAt(j)) continue outer
    return true
  }
  return false
}

/**
 * The line written for Content-Length field i: '' to copy it as received (its
 * value is already canonical: no leading zero, the parser checked the digits),
 * else the canonical line.
 */
function lengthLine (p: HeadParser, i: number): string {
  const s = p.valueStart(i)
  return p.buf[s] !== 0x30 || p.valueEnd(i) - s === 1 ? '' : 'Content-Length: ' + p.contentLength + '\r\n'
}

const CHUNKED_LINE = 'Transfer-Encoding: chunked\r\n'

/** Is field i named by a Connection option (hence hop-by-hop)? */
function namedByConnection (p: HeadParser, i: number): boolean {
  const n = p.connectionTokenCount
  if (n === 0) return false
  const buf = p.buf
  const base = p.base
  const ns = p.nameStart(i)
  const len = p.nameEnd(i) - ns
  outer:
  for (let k = 0; k < n; k++) {
    const ts = base + p.connectionTokens[k * 2]
    if (base + p.connectionTokens[k * 2 + 1] - ts !== len) continue
    for (let j = 0; j < len; j++) if (LOWER[buf[ns + j]] !== LOWER[buf[ts + j]]) continue outer
    return true
  }
  return false
}

/**
 * The field lines of `p` under `plan`, written into `out` at `o` (adjacent
 * copied lines merged into one copy), or only measured when `out` is null.
 * Returns the offset after them (or their length when measuring from 0).
 */
function writeFields (p: HeadParser, out: Buffer | null, o: number): number {
  const buf = p.buf
  const base = p.base
  let runStart = -1
  let runEnd = -1
  let wroteLength = false
  let wroteCoding = false
  for (let i = 0; i < p.headerCount; i++) {
    const kind = p.fieldKinds[i]
    let line = '' // a line written instead of the received one
    let keep: boolean
    if (kind === H_CONTENT_LENGTH) {
      keep = false
      if (plan.contentLength && !wroteLength) {
        wroteLength = true
        line = lengthLine(p, i)
        keep = line === ''
      }
    } else if (kind === H_TRANSFER_ENCODING) {
      keep = false
      if (plan.transferEncoding === 'chunked' && !wroteCoding) { line = CHUNKED_LINE; wroteCoding = true }
    } else if (kind === H_HOST) {
      keep = plan.host === ''
      if (!keep) line = 'Host: ' + plan.host + '\r\n'
    } else {
      keep = !((plan.drop[kind] === 1 && !(plan.keepUpgrade && kind === H_UPGRADE)) || namedByConnection(p, i) ||
        (plan.remove !== null && nameIn(p, i, plan.remove)))
    }
    if (keep && p.fieldSkip[i] !== 1) {
      if (runStart === -1) runStart = p.fieldLineStart(i)
      runEnd = p.fieldLineEnd(i)
      continue
    }
    if (runStart !== -1) {
      o += out === null ? runEnd - runStart : buf.copy(out, o, base + runStart, base + runEnd)
      runStart = -1
    }
    if (line !== '') o += out === null ? line.length : out.latin1Write(line, o)
  }
  if (runStart !== -1) o += out === null ? runEnd - runStart : buf.copy(out, o, base + runStart, base + runEnd)
  return o
}

export interface ForwardIdentity {
  /** Client address as it goes into X-Forwarded-For ('1.2.3.4', '::1'). */
  clientIp: string
  /** RFC 7239 node for Forwarded: for=1.2.3.4 or for="[::1]". */
  forwardedFor: string
  /** Pseudonym for Via. */
  via: string
  /** The scheme the client used: 'https' on a TLS listener (X-Forwarded-Proto, Forwarded proto=). */
  proto: 'http' | 'https'
  /**
   * The added fields for the common case (HTTP/1.1, no prior X-Forwarded-For,
   * Forwarded or Via, not upgrading), built on first use: they only depend on
   * the connection, so most requests copy these bytes instead of building strings.
   */
  plainTail?: Buffer
}

function hasKind (p: HeadParser, a: number, b: number, c: number): boolean {
  const kinds = p.fieldKinds
  for (let i = 0; i < p.headerCount; i++) {
    const k = kinds[i]
    if (k === a || k === b || k === c) return true
  }
  return false
}

/** The fields the proxy adds to a forwarded request, ending with the blank line. */
function addedFields (id: ForwardIdentity, priorXff: string, priorForwarded: string, priorVia: string, http10: boolean, upgrading: boolean): string {
  const proto = id.proto
  return 'X-Forwarded-For: ' + (priorXff === '' ? id.clientIp : priorXff + ', ' + id.clientIp) + '\r\n' +
    'X-Forwarded-Proto: ' + proto + '\r\n' +
    'Forwarded: ' + (priorForwarded === '' ? '' : priorForwarded + ', ') + id.forwardedFor + ';proto=' + proto + '\r\n' +
    'Via: ' + (priorVia === '' ? '' : priorVia + ', ') + (http10 ? '1.0 ' : '1.1 ') + id.via + '\r\n' +
    (upgrading ? 'Connection: upgrade\r\n\r\n' : '\r\n')
}

/**
 * The request head sent upstream: the request line as HTTP/1.1 (origin-form:
 * an absolute-form target loses its scheme and authority, which go into Host),
 * the kept fields with the proxy's framing and Host, then X-Forwarded-For /
 * X-Forwarded-Proto / Forwarded / Via with this hop appended, and Connection:
 * upgrade when upgrading. `extra` is more field lines (e.g. the cache's
 * validators). `body`, when given, is copied right after the head so both
 * leave in one write.
 */
export function buildRequestHead (p: HeadParser, id: ForwardIdentity, upgrading: boolean, body: Buffer | null, extra: string, edit: RequestEdit | null = null): Buffer {
  const buf = p.buf
  const base = p.base
  const http10 = p.versionMinor === 0
  plan.drop = http10 ? DROP_REQUEST_10 : DROP_REQUEST
  plan.keepUpgrade = upgrading
  plan.contentLength = true
  plan.transferEncoding = 'chunked'
  plan.remove = edit !== null ? edit.remove : null
  // a route's target replaces the received one as an absolute-form target's path does
  const newTarget = edit !== null ? edit.target : null
  const absolute = p.absoluteForm || newTarget !== null
  const newHost = edit !== null ? edit.host : null
  const authority = newHost ?? (p.absoluteForm ? p.host() : '')
  plan.host = authority
  // skip the empty lines a client may send before the request line (RFC 9112 §2.2): they are not forwarded
  let lineStart = base
  while (buf[lineStart] === 0x0d) lineStart += 2
  const lineEnd = base + p.fieldsStart
  // absolute-form: method SP, then the path (p.path()), then SP HTTP-version CRLF
  const path = newTarget ?? (absolute ? p.path() : '')
  const methodEnd = base + p.targetStart
  const versionStart = base + p.targetEnd
  const lineBytes = absolute ? (methodEnd - lineStart) + path.length + (lineEnd - versionStart) : lineEnd - lineStart
  // an HTTP/1.0 absolute-form request may come without Host: the authority goes in as one
  // (and a route's setHost on a request without one)
  const addHost = authority !== '' && p.hostCount === 0 ? 'Host: ' + authority + '\r\n' : ''
  // `extra` (validators, a request ID, a route's fields) goes before the added fields, so the common tail stays a copy
  let added: string | Buffer
  if (!http10 && !upgrading && !hasKind(p, H_X_FORWARDED_FOR, H_FORWARDED, H_VIA)) {
    added = id.plainTail ?? (id.plainTail = Buffer.from(addedFields(id, '', '', '', false, false), 'latin1'))
  } else {
    added = addedFields(id, p.headerOfKind(H_X_FORWARDED_FOR) ?? '', p.headerOfKind(H_FORWARDED) ?? '', p.headerOfKind(H_VIA) ?? '', http10, upgrading)
  }
  const size = lineBytes + addHost.length + writeFields(p, null, 0) + extra.length + added.length
  const out = Buffer.allocUnsafe(size + (body === null ? 0 : body.length))
  let o: number
  if (absolute) {
    o = buf.copy(out, 0, lineStart, methodEnd)
    o += out.latin1Write(path, o)
    o += buf.copy(out, o, versionStart, lineEnd)
  } else {
    o = buf.copy(out, 0, lineStart, lineEnd)
  }
  // RFC 9110 §2.5: an intermediary sends its own HTTP-version. The line ends `HTTP/1.x` CRLF: x becomes 1,
  // for HTTP/1.0 (and 1.2 and up, processed as 1.1) too; an HTTP/1.0 request with no Host at all stays
  // HTTP/1.0, as an HTTP/1.1 request without Host would be refused (RFC 9112 §3.2)
  if (!http10 || p.hostCount > 0 || addHost !== '') out[o - 3] = 0x31
  if (addHost !== '') o += out.latin1Write(addHost, o)
  o = writeFields(p, out, o)
  if (extra !== '') o += out.latin1Write(extra, o)
  o += typeof added === 'string' ? out.latin1Write(added, o) : added.copy(out, o)
  if (body !== null) body.copy(out, o)
  return out
}

/** The Connection field of a relayed response. */
export type ConnectionField = 'none' | 'close' | 'keep-alive' | 'upgrade'
const CONNECTION_LINES: Record<ConnectionField, string> = {
  none: '',
  close: 'Connection: close\r\n',
  'keep-alive': 'Connection: keep-alive\r\n', // for HTTP/1.0 clients that asked for it
  upgrade: 'Connection: upgrade\r\n',
}

const STATUS_PREFIX = Buffer.from('HTTP/1.1', 'latin1')

// the common response tails (no prior Via, nothing extra), per pseudonym, version and Connection line
let tailVia = ''
const tails = new Map<string, string>()
function plainResponseTail (via: string, versionMinor: number, connection: ConnectionField): string {
  if (via !== tailVia) { tailVia = via; tails.clear() }
  const k = versionMinor === 0 ? connection + '0' : connection
  let tail = tails.get(k)
  if (tail === undefined) {
    tail = 'Via: ' + (versionMinor === 0 ? '1.0 ' : '1.1 ') + via + '\r\n' + CONNECTION_LINES[connection] + '\r\n'
    tails.set(k, tail)
  }
  return tail
}

/**
 * The response head relayed to the client: status line with our own version
 * (RFC 9110 §6.2: a proxy sends its own HTTP-version), the kept fields with
 * the proxy's framing (`transferEncoding`: 'chunked' when the body is
 * re-chunked, 'drop' when it is not chunked or is de-chunked for an HTTP/1.0
 * client), Via, our Connection field, and `extra` lines (e.g. a sticky Set-Cookie).
 */
export function buildResponseHead (p: HeadParser, via: string, connection: ConnectionField, extra: string, transferEncoding: TransferFraming, remove: readonly string[] | null = null): Buffer {
  const out = Buffer.allocUnsafe(planResponseHead(p, via, connection, extra, transferEncoding, remove))
  writeResponseHead(p, out, extra)
  return out
}

/**
 * buildResponseHead's head written into `out` from its start, when it fits
 * (the thread's scratch region, read-arena.ts: no buffer per response): its
 * length, or -1 when it does not fit and nothing was written.
 */
export function responseHeadInto (out: Buffer, p: HeadParser, via: string, connection: ConnectionField, extra: string, transferEncoding: TransferFraming, remove: readonly string[] | null = null): number {
  const size = planResponseHead(p, via, connection, extra, transferEncoding, remove)
  if (size > out.length) return -1
  writeResponseHead(p, out, extra)
  return size
}

/** The Via and Connection lines that end the response head being written (planResponseHead sets it). */
let responseTail = ''

/** Set `plan` and `responseTail` for a response head; its size. */
function planResponseHead (p: HeadParser, via: string, connection: ConnectionField, extra: string, transferEncoding: TransferFraming, remove: readonly string[] | null): number {
  const priorVia = p.headerOfKind(H_VIA)
  // `extra` (a sticky Set-Cookie, X-Cache, a request ID) goes before Via, so the common tail stays cached
  responseTail = priorVia === null
    ? plainResponseTail(via, p.versionMinor, connection)
    : 'Via: ' + priorVia + ', ' + (p.versionMinor === 0 ? '1.0 ' : '1.1 ') + via + '\r\n' + CONNECTION_LINES[connection] + '\r\n'
  const status = p.status
  plan.drop = DROP_RESPONSE
  plan.keepUpgrade = connection === 'upgrade'
  // RFC 9110 §8.6: no Content-Length in a 1xx or 204; §15.4.5 lets a 304 (and a HEAD answer) carry it
  plan.contentLength = status >= 200 && status !== 204
  plan.transferEncoding = transferEncoding
  plan.host = ''
  plan.remove = remove
  return p.fieldsStart + writeFields(p, null, 0) + extra.length + responseTail.length
}

function writeResponseHead (p: HeadParser, out: Buffer, extra: string): void {
  STATUS_PREFIX.copy(out, 0)
  let o = 8 + p.buf.copy(out, 8, p.base + 8, p.base + p.fieldsStart)
  o = writeFields(p, out, o)
  if (extra !== '') o += out.latin1Write(extra, o)
  out.latin1Write(responseTail, o)
}

declare global {
  interface Buffer {
    latin1Write (text: string, offset: number): number
  }
}

/** The response head the cache stores: our status-line version, end-to-end fields, canonical Content-Length, final CRLF. */
export function buildStoredHead (p: HeadParser): Buffer {
  const buf = p.buf
  const base = p.base
  plan.drop = DROP_STORED
  plan.keepUpgrade = false
  // as on the relay (planResponseHead): a stored 204 carries no Content-Length (RFC 9110 §8.6), whatever it arrived with
  plan.contentLength = p.status !== 204
  plan.transferEncoding = 'drop'
  plan.host = ''
  plan.remove = null
  const lineBytes = p.fieldsStart
  const out = Buffer.allocUnsafe(lineBytes + writeFields(p, null, 0) + 2)
  STATUS_PREFIX.copy(out, 0)
  let o = 8 + buf.copy(out, 8, base + 8, base + lineBytes)
  o = writeFields(p, out, o)
  out[o] = 0x0d
  out[o + 1] = 0x0a
  return out
}
