/**
 * Heads the proxy writes: the request it forwards upstream and the response
 * head it relays to the client. Both copy the received bytes range by range
 * ("keep everything else byte-for-byte") and leave out hop-by-hop fields
 * (RFC 9110 §7.6.1): Connection and the fields it names, Keep-Alive,
 * Proxy-Connection, TE, Trailer, and Upgrade unless upgrading. One
 * Buffer.allocUnsafe per head (pooled for small sizes), one write.
 */
import type { HeadParser } from './head-parser'
import {
  H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE,
  H_X_FORWARDED_FOR, H_X_FORWARDED_PROTO, H_FORWARDED, H_VIA, H_AGE,
} from './header-names'
import { LOWER } from './tables'

// fields that are hop-by-hop, or that the proxy rewrites itself
const DROP_REQUEST = new Uint8Array(32)
for (const k of [H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE, H_X_FORWARDED_FOR, H_X_FORWARDED_PROTO, H_FORWARDED, H_VIA]) DROP_REQUEST[k] = 1
const DROP_RESPONSE = new Uint8Array(32)
for (const k of [H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE, H_VIA]) DROP_RESPONSE[k] = 1
// what a stored response leaves out: hop-by-hop, and what the cache sets itself on every hit (Age, Via)
const DROP_STORED = new Uint8Array(32)
for (const k of [H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER, H_UPGRADE, H_VIA, H_AGE]) DROP_STORED[k] = 1

/** Is field i named by a Connection option (hence hop-by-hop)? */
function namedByConnection (p: HeadParser, i: number): boolean {
  const n = p.connectionTokenCount
  if (n === 0) return false
  const buf = p.buf
  const base = p.base
  const ns = base + p.fields[i * 5]
  const len = base + p.fields[i * 5 + 1] - ns
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
 * Join every value of the fields of `kind` (list fields, RFC 9110 §5.3; Cookie
 * lines join with "; ", RFC 6265 §5.4); '' when absent.
 */
export function joinedValues (p: HeadParser, kind: number, separator = ', '): string {
  let out = ''
  for (let i = 0; i < p.headerCount; i++) {
    if (p.fieldKinds[i] !== kind) continue
    const v = p.fieldValue(i)
    if (v === '') continue
    out = out === '' ? v : out + separator + v
  }
  return out
}

/**
 * Copy the kept field lines of `p` into `out` at `o`, merging adjacent kept
 * lines into one copy. Returns the new offset.
 */
function copyKeptFields (p: HeadParser, drop: Uint8Array, keepUpgrade: boolean, out: Buffer, o: number): number {
  const buf = p.buf
  const base = p.base
  const fields = p.fields
  let runStart = -1
  let runEnd = -1
  for (let i = 0; i < p.headerCount; i++) {
    const kind = p.fieldKinds[i]
    const dropIt = (drop[kind] === 1 && !(keepUpgrade && kind === H_UPGRADE)) || p.fieldSkip[i] === 1 || namedByConnection(p, i)
    const ls = fields[i * 5]
    const le = fields[i * 5 + 4]
    if (dropIt) {
      if (runStart !== -1) { o += buf.copy(out, o, base + runStart, base + runEnd); runStart = -1 }
      continue
    }
    if (runStart === -1) runStart = ls
    runEnd = le
  }
  if (runStart !== -1) o += buf.copy(out, o, base + runStart, base + runEnd)
  return o
}

/** Bytes of the kept field lines (an upper bound is fine for allocation, but we compute it exactly). */
function keptFieldBytes (p: HeadParser, drop: Uint8Array, keepUpgrade: boolean): number {
  let n = 0
  for (let i = 0; i < p.headerCount; i++) {
    const kind = p.fieldKinds[i]
    if ((drop[kind] === 1 && !(keepUpgrade && kind === H_UPGRADE)) || p.fieldSkip[i] === 1 || namedByConnection(p, i)) continue
    n += p.fields[i * 5 + 4] - p.fields[i * 5]
  }
  return n
}

export interface ForwardIdentity {
  /** Client address as it goes into X-Forwarded-For ('1.2.3.4', '::1'). */
  clientIp: string
  /** RFC 7239 node for Forwarded: for=1.2.3.4 or for="[::1]". */
  forwardedFor: string
  /** Pseudonym for Via. */
  via: string
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
  const proto = 'http'
  return 'X-Forwarded-For: ' + (priorXff === '' ? id.clientIp : priorXff + ', ' + id.clientIp) + '\r\n' +
    'X-Forwarded-Proto: ' + proto + '\r\n' +
    'Forwarded: ' + (priorForwarded === '' ? '' : priorForwarded + ', ') + id.forwardedFor + ';proto=' + proto + '\r\n' +
    'Via: ' + (priorVia === '' ? '' : priorVia + ', ') + (http10 ? '1.0 ' : '1.1 ') + id.via + '\r\n' +
    (upgrading ? 'Connection: upgrade\r\n\r\n' : '\r\n')
}

/**
 * The request head sent upstream: the request line as received, the kept
 * fields, then X-Forwarded-For / X-Forwarded-Proto / Forwarded / Via with this
 * hop appended, and Connection: upgrade when upgrading. `extra` is more field
 * lines (e.g. the cache's validators). `body`, when given, is copied right
 * after the head so both leave in one write.
 */
export function buildRequestHead (p: HeadParser, id: ForwardIdentity, upgrading: boolean, body: Buffer | null, extra = ''): Buffer {
  const buf = p.buf
  const base = p.base
  const http10 = p.versionMinor === 0
  if (!http10 && !upgrading && extra === '' && !hasKind(p, H_X_FORWARDED_FOR, H_FORWARDED, H_VIA)) {
    const tail = id.plainTail ?? (id.plainTail = Buffer.from(addedFields(id, '', '', '', false, false), 'latin1'))
    let lineStart = base
    while (buf[lineStart] === 0x0d) lineStart += 2
    const lineBytes = base + p.fieldsStart - lineStart
    const out = Buffer.allocUnsafe(lineBytes + keptFieldBytes(p, DROP_REQUEST, false) + tail.length + (body === null ? 0 : body.length))
    let o = buf.copy(out, 0, lineStart, lineStart + lineBytes)
    o = copyKeptFields(p, DROP_REQUEST, false, out, o)
    o += tail.copy(out, o)
    if (body !== null) body.copy(out, o)
    return out
  }
  const priorXff = joinedValues(p, H_X_FORWARDED_FOR)
  const priorForwarded = joinedValues(p, H_FORWARDED)
  const priorVia = joinedValues(p, H_VIA)
  const added = extra + addedFields(id, priorXff, priorForwarded, priorVia, http10, upgrading)
  // skip the empty lines a client may send before the request line (RFC 9112 §2.2): they are not forwarded
  let lineStart = base
  while (buf[lineStart] === 0x0d) lineStart += 2
  const lineBytes = base + p.fieldsStart - lineStart
  const size = lineBytes + keptFieldBytes(p, DROP_REQUEST, upgrading) + added.length
  const out = Buffer.allocUnsafe(size + (body === null ? 0 : body.length))
  let o = buf.copy(out, 0, lineStart, lineStart + lineBytes)
  o = copyKeptFields(p, DROP_REQUEST, upgrading, out, o)
  o += out.latin1Write(added, o)
  if (body !== null) body.copy(out, o)
  return out
}

export const CONNECTION_NONE = 0
export const CONNECTION_CLOSE = 1
export const CONNECTION_KEEP_ALIVE = 2 // for HTTP/1.0 clients that asked for it
export const CONNECTION_UPGRADE = 3

const STATUS_PREFIX = Buffer.from('HTTP/1.1', 'latin1')

// the common response tails (no prior Via, nothing extra), per pseudonym, version and Connection line
let tailVia = ''
const tails: string[] = []
function plainResponseTail (via: string, versionMinor: number, connection: number): string {
  if (via !== tailVia) { tailVia = via; tails.length = 0 }
  const k = versionMinor * 4 + connection
  return tails[k] ?? (tails[k] = 'Via: ' + (versionMinor === 0 ? '1.0 ' : '1.1 ') + via + '\r\n' + CONNECTION_LINES[connection] + '\r\n')
}
const CONNECTION_LINES = ['', 'Connection: close\r\n', 'Connection: keep-alive\r\n', 'Connection: upgrade\r\n']

/**
 * The response head relayed to the client: status line with our own version
 * (RFC 9110 §6.2: a proxy sends its own HTTP-version), the kept fields, Via,
 * our Connection field, and `extra` lines (e.g. a sticky Set-Cookie).
 */
export function buildResponseHead (p: HeadParser, via: string, connection: number, extra: string): Buffer {
  const buf = p.buf
  const base = p.base
  const priorVia = joinedValues(p, H_VIA)
  const tail = priorVia === '' && extra === ''
    ? plainResponseTail(via, p.versionMinor, connection)
    : 'Via: ' + (priorVia === '' ? '' : priorVia + ', ') + (p.versionMinor === 0 ? '1.0 ' : '1.1 ') + via + '\r\n' +
      CONNECTION_LINES[connection] + extra + '\r\n'
  const lineBytes = p.fieldsStart
  const keepUpgrade = connection === CONNECTION_UPGRADE
  const size = lineBytes + keptFieldBytes(p, DROP_RESPONSE, keepUpgrade) + tail.length
  const out = Buffer.allocUnsafe(size)
  STATUS_PREFIX.copy(out, 0)
  let o = 8 + buf.copy(out, 8, base + 8, base + lineBytes)
  o = copyKeptFields(p, DROP_RESPONSE, keepUpgrade, out, o)
  out.latin1Write(tail, o)
  return out
}

declare global {
  interface Buffer {
    latin1Write (text: string, offset: number): number
  }
}

/** The response head the cache stores: our status-line version, end-to-end fields, final CRLF. */
export function buildStoredHead (p: HeadParser): Buffer {
  const buf = p.buf
  const base = p.base
  const lineBytes = p.fieldsStart
  const out = Buffer.allocUnsafe(lineBytes + keptFieldBytes(p, DROP_STORED, false) + 2)
  STATUS_PREFIX.copy(out, 0)
  let o = 8 + buf.copy(out, 8, base + 8, base + lineBytes)
  o = copyKeptFields(p, DROP_STORED, false, out, o)
  out[o] = 0x0d
  out[o + 1] = 0x0a
  return out
}
