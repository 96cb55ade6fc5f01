/**
 * Turns the raw path or query of a request-target into what a backend will
 * act on, so that rules match meaning rather than spelling:
 *
 *   1. percent-decode, repeated while a round still finds an escape, at most
 *      MAX_DECODE_ROUNDS rounds: %252e%252e%252f -> %2e%2e%2f -> '../'. A
 *      backend that decodes twice must not see more than the firewall did;
 *      the bound keeps a hostile target from buying unbounded work.
 *   2. fold overlong UTF-8 forms of ASCII (%c0%ae = '.', %e0%80%af = '/'):
 *      invalid UTF-8 (RFC 3629 §3) that old decoders (IIS) still accepted.
 *      Valid UTF-8 never contains these sequences, so folding cannot change it.
 *   3. path only: remove dot segments (RFC 3986 §5.2.4), read '\' as '/'
 *      (WHATWG URL, and Windows backends) and merge repeated slashes (nginx's
 *      merge_slashes), so /public/../admin, /admin/./ and //admin all reach
 *      rules as /admin. A trailing slash is kept: /a/ and /a stay distinct.
 *      Path parameters (';' to the end of a segment, RFC 3986 §3.3) are
 *      dropped, as Tomcat and Jetty drop them before routing: /;/admin,
 *      /x/..;/admin and /admin;jsessionid=1 all reach rules as /admin.
 *   4. decode the bytes as UTF-8 (invalid sequences become U+FFFD).
 *
 * Works in one scratch buffer owned by the decoder; the only allocation is the
 * resulting string. `flags` reports what the last call saw on the way.
 */
import { SLASH, BACKSLASH, DOT, PERCENT, SEMICOLON } from '../http/tables'

export const MAX_DECODE_ROUNDS = 4

/** The decoded path contained a '..' segment (or '..;'), before it was removed. */
export const D_TRAVERSAL = 1
/** The decoded bytes contained NUL. */
export const D_NUL = 2

/** Hex digit value, or 0xff. */
const HEX_VALUE = (() => {
  const table = new Uint8Array(256).fill(0xff)
  for (let i = 0; i < 10; i++) table[0x30 + i] = i
  for (let i = 0; i < 6; i++) { table[0x41 + i] = 10 + i; table[0x61 + i] = 10 + i }
  return table
})()

export class TargetDecoder {
  /** What the last decodePath/decodeQuery saw: D_* bits. */
  flags = 0
  private scratch: Buffer

  constructor (initialBytes = 8192) {
    this.scratch = Buffer.allocUnsafe(initialBytes)
  }

  /** Decoded, normalised path of source[start, end); '/' for an empty path. */
  decodePath (source: string, start: number, end: number): string {
    let length = this.decodeInto(source, start, end)
    const bytes = this.scratch
    const first = bytes[0]
    if (length > 0 && (first === SLASH || first === BACKSLASH)) length = this.normalise(length)
    if (length === 0) return '/'
    return bytes.toString('utf8', 0, length)
  }

  /** Decoded query of source[start, end) (after the '?'). '+' stays '+': signatures treat it as a space. */
  decodeQuery (source: string, start: number, end: number): string {
    const length = this.decodeInto(source, start, end)
    return this.scratch.toString('utf8', 0, length)
  }

  /** Load, then rounds of percent-decoding and overlong folding. Returns the byte length; sets D_NUL. */
  private decodeInto (source: string, start: number, end: number): number {
    let length = this.load(source, start, end)
    const bytes = this.scratch
    for (let round = 0; round < MAX_DECODE_ROUNDS; round++) {
      const decoded = percentDecode(bytes, length)
      const folded = foldOverlong(bytes, decoded)
      if (folded === length) break // nothing changed: no escape or overlong form left
      length = folded
    }
    this.flags = 0
    for (let i = 0; i < length; i++) {
      if (bytes[i] === 0) { this.flags = D_NUL; break }
    }
    return length
  }

  /**
   * Copy source[start, end) into the scratch as bytes. The parser hands over
   * latin1 (one char per byte); a char above 0xff can only come from another
   * caller and is written as UTF-8 so it is not truncated into ASCII.
   */
  private load (source: string, start: number, end: number): number {
    if (this.scratch.length < (end - start) * 3) this.scratch = Buffer.allocUnsafe((end - start) * 3)
    const bytes = this.scratch
    let w = 0
    for (let i = start; i < end; i++) {
      let c = source.charCodeAt(i)
      if (c < 0x100) { bytes[w++] = c; continue }
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < end) {
        const low = source.charCodeAt(i + 1)
        if (low >= 0xdc00 && low < 0xe000) {
          c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00)
          i++
          bytes[w++] = 0xf0 | (c >> 18)
          bytes[w++] = 0x80 | ((c >> 12) & 0x3f)
          bytes[w++] = 0x80 | ((c >> 6) & 0x3f)
          bytes[w++] = 0x80 | (c & 0x3f)
          continue
        }
      }
      if (c < 0x800) {
        bytes[w++] = 0xc0 | (c >> 6)
      } else {
        bytes[w++] = 0xe0 | (c >> 12)
        bytes[w++] = 0x80 | ((c >> 6) & 0x3f)
      }
      bytes[w++] = 0x80 | (c & 0x3f)
    }
    return w
  }

  /**
   * RFC 3986 §5.2.4 remove_dot_segments over bytes[0, length), in place (the
   * write position never passes the read position), with '\' as a separator,
   * each segment's parameters (from ';') dropped, and empty segments dropped.
   * Sets D_TRAVERSAL for a '..' segment ('..;x' included).
   */
  private normalise (length: number): number {
    const bytes = this.scratch
    let w = 0
    let r = 0
    while (r < length) {
      r++ // the separator
      const segmentStart = r
      let nameEnd = -1 // where the segment's parameters start
      while (r < length && bytes[r] !== SLASH && bytes[r] !== BACKSLASH) {
        if (nameEnd === -1 && bytes[r] === SEMICOLON) nameEnd = r
        r++
      }
      const segmentLength = (nameEnd === -1 ? r : nameEnd) - segmentStart
      const last = r >= length
      if (segmentLength === 0 || (segmentLength === 1 && bytes[segmentStart] === DOT)) {
        if (last) bytes[w++] = SLASH
        continue
      }
      if (bytes[segmentStart] === DOT && bytes[segmentStart + 1] === DOT) {
        if (segmentLength === 2) {
          this.flags |= D_TRAVERSAL
          while (w > 0 && bytes[w - 1] !== SLASH) w--
          if (w > 0) w-- // drop the separator too: /a/b/.. -> /a
          if (last) bytes[w++] = SLASH
          continue
        }
      }
      bytes[w++] = SLASH
      // until something is dropped the segment is already in place; copy by hand after (segments are short)
      if (w !== segmentStart) for (let k = 0; k < segmentLength; k++) bytes[w + k] = bytes[segmentStart + k]
      w += segmentLength
    }
    return w
  }
}

/** One round of %XX decoding over bytes[0, length), in place. A '%' without two hex digits stays. */
function percentDecode (bytes: Buffer, length: number): number {
  let w = 0
  let r = 0
  while (r < length) {
    const c = bytes[r]
    if (c === PERCENT && r + 2 < length) {
      const high = HEX_VALUE[bytes[r + 1]]
      const low = HEX_VALUE[bytes[r + 2]]
      if (high !== 0xff && low !== 0xff) {
        bytes[w++] = (high << 4) | low
        r += 3
        continue
      }
    }
    bytes[w++] = c
    r++
  }
  return w
}

/**
 * Replace overlong UTF-8 encodings of ASCII with the ASCII byte, in place:
 * C0/C1 xx (2 bytes), E0 80|81 xx (3 bytes), F0 80 80|81 xx (4 bytes).
 */
function foldOverlong (bytes: Buffer, length: number): number {
  let w = 0
  let r = 0
  while (r < length) {
    const c = bytes[r]
    if (c >= 0xc0) {
      if ((c === 0xc0 || c === 0xc1) && r + 1 < length && isContinuation(bytes[r + 1])) {
        bytes[w++] = ((c & 1) << 6) | (bytes[r + 1] & 0x3f)
        r += 2
        continue
      }
      if (c === 0xe0 && r + 2 < length && (bytes[r + 1] & 0xfe) === 0x80 && isContinuation(bytes[r + 2])) {
        bytes[w++] = ((bytes[r + 1] & 1) << 6) | (bytes[r + 2] & 0x3f)
        r += 3
        continue
      }
      if (c === 0xf0 && r + 3 < length && bytes[r + 1] === 0x80 && (bytes[r + 2] & 0xfe) === 0x80 && isContinuation(bytes[r + 3])) {
        bytes[w++] = ((bytes[r + 2] & 1) << 6) | (bytes[r + 3] & 0x3f)
        r += 4
        continue
      }
    }
    bytes[w++] = c
    r++
  }
  return w
}

function isContinuation (b: number): boolean {
  return (b & 0xc0) === 0x80
}
