/**
 * Grammar checks for the field values and target parts whose reading decides
 * where a message goes or how it is framed: an authority (Host, absolute-form
 * targets) and a Transfer-Encoding list. Both are byte scans that return a
 * verdict; the parser turns a verdict into its error code.
 */
import { SP, HTAB, COMMA, SEMICOLON, EQUALS, DQUOTE, BACKSLASH, COLON, TOKEN, FIELD_VALUE, HEX, equalsLower, ascii } from './tables'

const TOKEN_T = TOKEN

/** RFC 3986 §3.2.2 reg-name bytes: unreserved / sub-delims ('%' is checked as pct-encoded on its own). */
const REG_NAME = (() => {
  const t = new Uint8Array(256)
  for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=") t[c.charCodeAt(0)] = 1
  return t
})()
/** Inside an IP-literal: IPv6address / IPvFuture bytes (hex, ':', '.', and IPvFuture's unreserved / sub-delims). */
const IP_LITERAL = (() => {
  const t = new Uint8Array(256)
  for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:") t[c.charCodeAt(0)] = 1
  return t
})()

const MAX_PORT_DIGITS = 5

/**
 * Where the host of the authority buf[s, e) ends (RFC 3986 §3.2: host [ ":" port ]),
 * or -1 when the bytes are not an authority. `e` when there is no port; a port
 * may be empty (RFC 3986 §6.2.3 normalises it away). An empty host is valid
 * only where `allowEmpty` (a Host field may be empty, RFC 9112 §3.2).
 */
export function authorityHostEnd (buf: Uint8Array, s: number, e: number, allowEmpty: boolean): number {
  if (s === e) return allowEmpty ? e : -1
  let i = s
  if (buf[i] === 0x5b) { // '[' IP-literal ']'
    i++
    while (i < e && IP_LITERAL[buf[i]] === 1) i++
    if (i >= e || buf[i] !== 0x5d || i === s + 1) return -1
    i++
  } else {
    while (i < e) {
      const b = buf[i]
      if (REG_NAME[b] === 1) { i++; continue }
      if (b === 0x25 && i + 2 < e && HEX[buf[i + 1]] !== 0xff && HEX[buf[i + 2]] !== 0xff) { i += 3; continue }
      break
    }
    if (i === s) return -1 // a port without a host
  }
  const hostEnd = i
  if (i === e) return hostEnd
  if (buf[i] !== COLON) return -1
  i++
  if (e - i > MAX_PORT_DIGITS) return -1
  for (; i < e; i++) if (buf[i] < 0x30 || buf[i] > 0x39) return -1
  return hostEnd
}

/** A host name as rules compare it: lower case, without a trailing dot (RFC 1034 §3.1: "a." names "a"). */
export function comparableHost (name: string): string {
  const end = name.length > 1 && name.charCodeAt(name.length - 1) === 0x2e ? name.length - 1 : name.length
  return (end === name.length ? name : name.slice(0, end)).toLowerCase()
}

/** comparableHost of an authority given as a string (config values): its port, if any, left out. */
export function comparableHostOf (authority: string): string {
  const bytes = Buffer.from(authority, 'latin1')
  const end = authorityHostEnd(bytes, 0, bytes.length, true)
  return comparableHost(end < 0 ? authority : authority.slice(0, end))
}

/** What a Transfer-Encoding field line says (RFC 9112 §6.1, §7; RFC 9110 §5.6.1 lists). */
export const TE_CHUNKED = 1 //        the line lists chunked (once), nothing else
export const TE_OTHER = 2 //          the line lists a coding other than chunked (the proxy implements none)
export const TE_CHUNKED_TWICE = 3 //  chunked appears more than once on the line
export const TE_CHUNKED_PARAMS = 4 // chunked with parameters (it takes none)
export const TE_INVALID = 5 //        not the grammar: stray bytes, empty codings, non-ASCII
export const TE_EMPTY = 6 //          no coding at all
export type TransferCodingVerdict = 1 | 2 | 3 | 4 | 5 | 6

const CHUNKED = ascii('chunked')

/**
 * Read one Transfer-Encoding line, buf[s, e) (value without surrounding OWS):
 *   Transfer-Encoding = #transfer-coding
 *   transfer-coding   = token *( OWS ";" OWS token BWS "=" BWS ( token / quoted-string ) )
 * Empty list elements are skipped (RFC 9110 §5.6.1.2). The verdict for a line
 * with both chunked and another coding is TE_OTHER (as is one where another
 * coding follows chunked): the proxy decodes nothing but chunked.
 */
export function readTransferCodings (buf: Uint8Array, s: number, e: number): TransferCodingVerdict {
  let i = s
  let chunked = 0
  let other = false
  let codings = 0
  while (i < e) {
    while (i < e && (buf[i] === SP || buf[i] === HTAB || buf[i] === COMMA)) i++
    if (i >= e) break
    const ts = i
    while (i < e && TOKEN_T[buf[i]] === 1) i++
    if (i === ts) return TE_INVALID
    const isChunked = equalsLower(buf, ts, i, CHUNKED)
    let params = 0
    i = skipOws(buf, i, e)
    while (i < e && buf[i] === SEMICOLON) {
      i = skipOws(buf, i + 1, e)
      const ns = i
      while (i < e && TOKEN_T[buf[i]] === 1) i++
      if (i === ns) return TE_INVALID
      i = skipOws(buf, i, e)
      if (i >= e || buf[i] !== EQUALS) return TE_INVALID
      i = skipOws(buf, i + 1, e)
      i = valueEnd(buf, i, e)
      if (i < 0) return TE_INVALID
      i = skipOws(buf, i, e)
      params++
    }
    if (i < e && buf[i] !== COMMA) return TE_INVALID
    codings++
    if (isChunked) {
      if (params > 0) return TE_CHUNKED_PARAMS
      chunked++
    } else {
      other = true
    }
  }
  if (codings === 0) return TE_EMPTY
  if (chunked > 1) return TE_CHUNKED_TWICE
  return other ? TE_OTHER : TE_CHUNKED
}

function skipOws (buf: Uint8Array, i: number, e: number): number {
  while (i < e && (buf[i] === SP || buf[i] === HTAB)) i++
  return i
}

/** End of a token or quoted-string value starting at i, or -1. */
function valueEnd (buf: Uint8Array, i: number, e: number): number {
  if (i >= e) return -1
  if (buf[i] !== DQUOTE) {
    const s = i
    while (i < e && TOKEN_T[buf[i]] === 1) i++
    return i === s ? -1 : i
  }
  i++
  while (i < e) {
    const b = buf[i]
    if (b === DQUOTE) return i + 1
    if (b === BACKSLASH) {
      if (i + 1 >= e || FIELD_VALUE[buf[i + 1]] !== 1) return -1
      i += 2
      continue
    }
    // RFC 9110 §5.6.4 qdtext; obs-text is refused here: a coding parameter has no use for it
    if (FIELD_VALUE[b] !== 1 || b >= 0x80) return -1
    i++
  }
  return -1
}
