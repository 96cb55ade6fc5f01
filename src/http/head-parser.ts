/**
 * A resumable, byte-level parser of HTTP/1.1 message heads (RFC 9112), for
 * requests from clients and responses from upstreams.
 *
 * Feed it bytes as they arrive with `execute(chunk, start, end)`: it returns
 * the index just past the head when the head is complete, HEAD_INCOMPLETE when
 * every byte was taken and more are needed, or HEAD_ERROR with `error` set.
 * No exceptions, no strings on the way: a head that arrives in one chunk is
 * parsed in place (offsets into that chunk); a head split across chunks is
 * accumulated in one per-connection buffer, and scanning resumes at the byte
 * where it stopped, so a client dribbling one byte at a time costs O(n).
 *
 * Strict wherever RFC 9112 lets or tells a recipient reject: a lenient proxy
 * is a request-smuggling hole. Every byte of the head is checked once.
 */
import {
  CR, LF, SP, HTAB, COLON, COMMA, TOKEN, FIELD_VALUE, TARGET, LOWER, equalsLower, ascii,
} from './tables'
import {
  classifyHeader, classifyName, H_OTHER, H_CONTENT_LENGTH, H_TRANSFER_ENCODING, H_CONNECTION, H_HOST, H_EXPECT, H_UPGRADE,
} from './header-names'
import {
  authorityHostEnd, readTransferCodings, TE_CHUNKED, TE_OTHER, TE_CHUNKED_TWICE, TE_CHUNKED_PARAMS, TE_EMPTY,
} from './field-syntax'
import type { ErrorCode } from '../errors'

// Module-local aliases of the lookup tables: compiled to CommonJS, an imported name is a
// property load on the module object at every use; a local const is a constant to V8.
const TOKEN_T = TOKEN
const FIELD_VALUE_T = FIELD_VALUE
const TARGET_T = TARGET
const LOWER_T = LOWER

export const HEAD_INCOMPLETE = -1
export const HEAD_ERROR = -2

/** How the body that follows the head is delimited (RFC 9112 §6.3). */
export type BodyKind = 'none' | 'length' | 'chunked' | 'close' // close: a response read until the upstream closes
export const BODY_NONE: BodyKind = 'none'
export const BODY_LENGTH: BodyKind = 'length'
export const BODY_CHUNKED: BodyKind = 'chunked'
export const BODY_CLOSE: BodyKind = 'close'

export const KIND_REQUEST = 0
export const KIND_RESPONSE = 1

// phases of the line scanner
const START_LINE = 0
const HEADER_LINE = 1

// request-target forms (RFC 9112 §3.2), followed byte by byte
const T_START = 0
const T_ORIGIN = 1 //    '/' ...
const T_ASTERISK = 2 //  '*'
const T_SCHEME = 3 //    "http://" or "https://", any case
const T_AUTHORITY = 4 // host [ ":" port ]
const T_ABS_PATH = 5 //  after the authority

const MAX_CONNECTION_TOKENS = 16
/** Heads up to this long are detached into the parser's reused buffer, longer ones into one of their own. */
const KEPT_MAX_BYTES = 4096
const MAX_METHOD_BYTES = 64

const CLOSE = ascii('close')
const KEEP_ALIVE = ascii('keep-alive')
const UPGRADE = ascii('upgrade')
const CONTINUE = ascii('100-continue')
const HTTP_1_DOT = ascii('HTTP/1.')
const HTTP_SLASH = ascii('HTTP/')
const HTTP_SCHEME = ascii('http://')
const HTTPS_SCHEME = ascii('https://')

/** Bytes an absolute-form authority may hold (RFC 3986 §3.2.2 host, §3.2.3 port); its grammar is checked whole at its end. */
const HOST_CHAR = (() => {
  const t = new Uint8Array(256)
  const ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%"
  for (const c of ok) t[c.charCodeAt(0)] = 1
  return t
})()

/** A header field's record in `fields`: five ints per field, named here. */
const F_NAME_START = 0
const F_NAME_END = 1
const F_VALUE_START = 2
const F_VALUE_END = 3
const F_LINE_END = 4 // after the CRLF
const F_INTS = 5

/** Well-known methods as interned strings: no allocation for them. */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT']
const METHOD_BYTES = METHODS.map(ascii)

export interface HeadLimits {
  maxHeaderBytes: number
  maxHeaderCount: number
  maxRequestTargetBytes: number
}

export class HeadParser {
  readonly kind: number
  readonly limits: HeadLimits
  /** Set when execute() returns HEAD_ERROR. */
  error: ErrorCode | null = null
  /** Human detail for the log line (never sent to the client). */
  errorDetail = ''

  // ---- where the head lives: offsets below are relative to `base` in `buf` ----
  buf: Buffer = EMPTY
  base = 0
  /** Length of the complete head, CRLFCRLF included. */
  headLength = 0

  // ---- start line ----
  method = ''
  targetStart = 0
  targetEnd = 0
  versionMinor = 1
  status = 0

  // ---- absolute-form target (RFC 9112 §3.2.2), offsets relative to base; -1 for the other forms ----
  authorityStart = -1
  authorityEnd = -1
  /** Where the path (or '?query') starts in an absolute-form target; == targetEnd when it has none. */
  pathStart = -1
  /** The host (without port) of the request's authority: the absolute-form target's, else Host's; -1 when none. */
  hostStart = -1
  hostEnd = -1

  // ---- header fields: F_INTS ints each (see F_NAME_START ...), read through the accessors below ----
  headerCount = 0
  private readonly fields: Int32Array
  readonly fieldKinds: Uint8Array
  /** 1 for a field the proxy must not forward (duplicate Content-Length). */
  readonly fieldSkip: Uint8Array
  /** Header block start (first field line) and end (before the final CRLF). */
  fieldsStart = 0
  fieldsEnd = 0

  // ---- semantics ----
  contentLength = -1
  bodyKind: BodyKind = BODY_NONE
  hasTransferEncoding = false
  connectionClose = false
  connectionKeepAlive = false
  connectionUpgrade = false
  /** Extra field names listed in Connection (hop-by-hop): start/end pairs. */
  readonly connectionTokens: Int32Array
  connectionTokenCount = 0
  hostCount = 0
  hasUpgrade = false
  expectContinue = false
  keepAlive = true
  /** Response: set by the caller before parsing when the request was HEAD. */
  noBodyExpected = false

  // ---- resumable scanner state ----
  private phase = START_LINE
  private lineStart = 0
  private scan = 0
  private colon = -1
  private sp1 = -1
  private sp2 = -1
  private targetState = T_START
  private accumulating = false
  private acc: Buffer | null = null
  /** Where detach() copies a head of up to KEPT_MAX_BYTES (made on first use, grown in 256-byte steps). */
  private kept: Buffer | null = null
  private accLength = 0
  private chunkedSeen = false
  private otherCodingSeen = false

  constructor (kind: number, limits: HeadLimits) {
    this.kind = kind
    this.limits = limits
    this.fields = new Int32Array(limits.maxHeaderCount * F_INTS)
    this.fieldKinds = new Uint8Array(limits.maxHeaderCount)
    this.fieldSkip = new Uint8Array(limits.maxHeaderCount)
    this.connectionTokens = new Int32Array(MAX_CONNECTION_TOKENS * 2)
  }

  /** Ready for the next message on the same connection. */
  reset (): void {
    this.error = null
    this.errorDetail = ''
    this.buf = EMPTY
    this.base = 0
    this.headLength = 0
    this.method = ''
    this.targetStart = 0
    this.targetEnd = 0
    this.authorityStart = -1
    this.authorityEnd = -1
    this.hostStart = -1
    this.hostEnd = -1
    this.pathStart = -1
    this.versionMinor = 1
    this.status = 0
    // a loop, not fill(): a builtin call costs more than clearing the few fields a head has
    for (let i = 0; i < this.headerCount; i++) this.fieldSkip[i] = 0
    this.headerCount = 0
    this.fieldsStart = 0
    this.fieldsEnd = 0
    this.contentLength = -1
    this.bodyKind = BODY_NONE
    this.hasTransferEncoding = false
    this.connectionClose = false
    this.connectionKeepAlive = false
    this.connectionUpgrade = false
    this.connectionTokenCount = 0
    this.hostCount = 0
    this.hasUpgrade = false
    this.expectContinue = false
    this.keepAlive = true
    this.noBodyExpected = false
    this.phase = START_LINE
    this.lineStart = 0
    this.scan = 0
    this.colon = -1
    this.sp1 = -1
    this.sp2 = -1
    this.targetState = T_START
    this.accumulating = false
    this.accLength = 0
    this.chunkedSeen = false
    this.otherCodingSeen = false
  }

  /** True once at least one byte of the current head has been taken. */
  get started (): boolean {
    // the empty lines a client may send before a request line (RFC 9112 §2.2) do not start a head
    return this.phase !== START_LINE || this.scan > this.lineStart
  }

  execute (chunk: Buffer, start: number, end: number): number {
    if (!this.accumulating) {
      this.buf = chunk
      this.base = start
      const r = this.parse(end - start)
      if (r !== HEAD_INCOMPLETE) return r < 0 ? r : start + r
      // Split head: keep what we have and carry on in the accumulation buffer.
      const have = end - start
      if (this.acc === null) this.acc = Buffer.allocUnsafe(this.limits.maxHeaderBytes + 4)
      chunk.copy(this.acc, 0, start, end)
      this.accLength = have
      this.accumulating = true
      this.buf = this.acc
      this.base = 0
      return HEAD_INCOMPLETE
    }
    const acc = this.acc as Buffer
    const before = this.accLength
    const room = acc.length - before
    const take = Math.min(room, end - start)
    chunk.copy(acc, before, start, start + take)
    this.accLength = before + take
    const r = this.parse(this.accLength)
    if (r === HEAD_INCOMPLETE) {
      if (take < end - start) return this.fail('SWY_ERR_HEADERS_TOO_LARGE', 'header block over limit')
      return HEAD_INCOMPLETE
    }
    if (r < 0) return r
    // head ends at acc offset r: map back into the caller's chunk
    return start + (r - before)
  }

  /**
   * The caller's chunk is about to be overwritten (a reused read buffer,
   * src/net/read-arena.ts) while this head is still wanted: copy the head's
   * bytes (all of the chunk from `base` when the head is not complete) into
   * memory of its own. Every offset is relative to `base`, so nothing else moves.
   */
  detach (): void {
    if (this.accumulating || this.buf === EMPTY) return // already in `acc`, or nothing parsed
    const buf = this.buf
    const start = this.base
    const end = this.headLength > 0 ? start + this.headLength : buf.length
    const n = end - start
    // a head of usual size goes into this parser's own buffer, reused by every head on the connection
    // (nothing keeps a view of a parser's bytes past its message); a larger one into a buffer of its own
    let copy = this.kept
    if (n > KEPT_MAX_BYTES) copy = Buffer.allocUnsafe(n)
    else if (copy === null || copy.length < n) copy = this.kept = Buffer.allocUnsafeSlow((n + 255) & ~255)
    buf.copy(copy, 0, start, end)
    this.buf = copy
    this.base = 0
  }

  // ---- the field record, by name ----
  nameStart (i: number): number { return this.base + this.fields[i * F_INTS + F_NAME_START] }
  nameEnd (i: number): number { return this.base + this.fields[i * F_INTS + F_NAME_END] }
  valueStart (i: number): number { return this.base + this.fields[i * F_INTS + F_VALUE_START] }
  valueEnd (i: number): number { return this.base + this.fields[i * F_INTS + F_VALUE_END] }
  /** Where field i's line starts, relative to base (start of its name). */
  fieldLineStart (i: number): number { return this.fields[i * F_INTS + F_NAME_START] }
  /** Where field i's line ends (after its CRLF), relative to base. */
  fieldLineEnd (i: number): number { return this.fields[i * F_INTS + F_LINE_END] }

  /** Value of field i as a latin1 string. */
  fieldValue (i: number): string {
    return this.buf.latin1Slice(this.valueStart(i), this.valueEnd(i))
  }

  fieldName (i: number): string {
    return this.buf.latin1Slice(this.nameStart(i), this.nameEnd(i))
  }

  /**
   * The one header lookup: every line of the field named `lowerName` joined by
   * `separator` (RFC 9110 §5.3 list fields; Cookie joins with "; ", RFC 6265
   * §5.4), the value itself when there is one line, null when absent. Names the
   * parser classifies are found by kind; others by comparing bytes.
   */
  header (lowerName: string, separator = ', '): string | null {
    const kind = classifyName(lowerName)
    if (kind !== H_OTHER) return this.headerOfKind(kind, separator)
    const buf = this.buf
    const n = lowerName.length
    let out: string | null = null
    outer:
    for (let i = 0; i < this.headerCount; i++) {
      const s = this.nameStart(i)
      if (this.nameEnd(i) - s !== n) continue
      for (let j = 0; j < n; j++) if (LOWER_T[buf[s + j]] !== lowerName.charCodeAt(j)) continue outer
      const v = this.fieldValue(i)
      out = out === null ? v : out + separator + v
    }
    return out
  }

  /** header() for a classified name (H_* from header-names): the fast path of the proxy itself. */
  headerOfKind (kind: number, separator = ', '): string | null {
    let out: string | null = null
    for (let i = 0; i < this.headerCount; i++) {
      if (this.fieldKinds[i] !== kind) continue
      const v = this.fieldValue(i)
      out = out === null ? v : out + separator + v
    }
    return out
  }

  /** The request target exactly as received. */
  target (): string {
    return this.buf.latin1Slice(this.base + this.targetStart, this.base + this.targetEnd)
  }

  get absoluteForm (): boolean { return this.authorityStart !== -1 }

  /**
   * The target in origin-form: as received, or for an absolute-form target its
   * path and query ("/" when the path is empty, RFC 9112 §3.2.1).
   */
  path (): string {
    if (this.authorityStart === -1) return this.target()
    const s = this.base + this.pathStart
    const e = this.base + this.targetEnd
    if (s === e) return '/'
    const tail = this.buf.latin1Slice(s, e)
    return this.buf[s] === 0x3f ? '/' + tail : tail
  }

  /**
   * The authority the request is for: an absolute-form target's (RFC 9112
   * §3.2.2: it wins over Host), with an empty port left out; else the Host
   * field's value; '' when there is neither (HTTP/1.0).
   */
  host (): string {
    if (this.authorityStart !== -1) {
      const end = this.authorityEnd === this.hostEnd + 1 ? this.hostEnd : this.authorityEnd
      return this.buf.latin1Slice(this.base + this.authorityStart, this.base + end)
    }
    for (let i = 0; i < this.headerCount; i++) if (this.fieldKinds[i] === H_HOST) return this.fieldValue(i)
    return ''
  }

  /** The host of that authority without its port ('' when there is none). */
  hostName (): string {
    return this.hostStart === -1 ? '' : this.buf.latin1Slice(this.base + this.hostStart, this.base + this.hostEnd)
  }

  private fail (code: ErrorCode, detail: string): number {
    this.error = code
    this.errorDetail = detail
    return HEAD_ERROR
  }

  /** Scan buf[base + scan, base + length); returns head length, HEAD_INCOMPLETE or HEAD_ERROR. */
  private parse (length: number): number {
    const buf = this.buf
    const base = this.base
    const limit = this.limits.maxHeaderBytes
    let p = this.scan
    // A head is at most maxHeaderBytes, final CRLF included, however it is split: the check
    // depends only on byte positions, never on where a chunk happened to end (RFC 9112 §2.3
    // leaves the limit to us; RFC 6585 §5: 431 when it is exceeded).
    const stop = length < limit ? length : limit
    while (p < stop) {
      if (this.phase === HEADER_LINE) {
        // Fast path for field lines: tight loops over the name and the value with the
        // position in a local, stopping at the first byte they do not take.
        if (this.colon === -1) {
          while (p < stop && TOKEN_T[buf[base + p]] === 1) p++
          if (p >= stop) break
          const c = buf[base + p]
          if (c === COLON) {
            if (p === this.lineStart) return this.fail('SWY_ERR_BAD_HEADER', 'empty field name')
            this.colon = p++
          } else if (c !== CR && c !== LF) {
            if (c === SP || c === HTAB) {
              // RFC 9112 §5.2: obs-fold; §5.1: no whitespace between name and colon
              return p === this.lineStart
                ? this.fail('SWY_ERR_OBS_FOLD', 'obsolete line folding')
                : this.fail('SWY_ERR_BAD_HEADER', 'whitespace before colon')
            }
            return this.fail('SWY_ERR_BAD_HEADER', `invalid byte 0x${c.toString(16)} in field name`)
          }
        }
        if (this.colon !== -1) {
          while (p < stop && FIELD_VALUE_T[buf[base + p]] === 1) p++
          if (p >= stop) break
          const c = buf[base + p]
          if (c !== CR && c !== LF) return this.fail('SWY_ERR_BAD_HEADER', `invalid byte 0x${c.toString(16)} in field value`)
        }
      } else if (this.sp1 !== -1 && this.sp2 === -1 && (this.targetState === T_ORIGIN || this.targetState === T_ABS_PATH)) {
        // Fast path for the path and query of a request target: a tight loop up to the
        // target limit; the byte that stops it (SP, CR, anything else) takes the slow path.
        const targetEnd = base + this.sp1 + 1 + this.limits.maxRequestTargetBytes
        const end = base + stop < targetEnd ? base + stop : targetEnd
        let i = base + p
        while (i < end && TARGET_T[buf[i]] === 1) i++
        p = i - base
        if (p >= stop) break
      }
      const b = buf[base + p]
      if (b === CR) {
        if (p + 1 >= stop) { // the LF is not here yet (wait) or would fall past the limit
          if (p + 1 >= limit) p = limit
          break
        }
        if (buf[base + p + 1] !== LF) return this.fail('SWY_ERR_BARE_CR_LF', 'bare CR')
        const lineEnd = p
        p += 2
        const r = this.phase === START_LINE ? this.startLine(lineEnd) : this.headerLine(lineEnd, p)
        if (r !== 0) {
          if (r < 0) return r
          this.headLength = p
          return p
        }
        this.lineStart = p
        this.colon = -1
        continue
      }
      if (b === LF) return this.fail('SWY_ERR_BARE_CR_LF', 'bare LF') // RFC 9112 §2.2: we do not accept LF alone
      if (this.kind === KIND_REQUEST) {
        const r = this.requestLineByte(b, p)
        if (r < 0) return r
      } else if (FIELD_VALUE_T[b] !== 1) {
        return this.fail('SWY_ERR_UPSTREAM_PROTOCOL', 'invalid byte in status line')
      }
      p++
    }
    this.scan = p
    if (p >= limit) {
      if (this.phase === START_LINE && this.kind === KIND_REQUEST && this.sp1 !== -1 && this.sp2 === -1) {
        return this.fail('SWY_ERR_URI_TOO_LONG', 'request target over limit')
      }
      return this.fail(this.kind === KIND_REQUEST ? 'SWY_ERR_HEADERS_TOO_LARGE' : 'SWY_ERR_UPSTREAM_PROTOCOL', 'header block over limit')
    }
    return HEAD_INCOMPLETE
  }

  /** Validate one byte of the request line as it is scanned. */
  private requestLineByte (b: number, p: number): number {
    if (b === SP) {
      if (this.sp1 === -1) {
        if (p === this.lineStart) return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'empty method')
        this.sp1 = p
      } else if (this.sp2 === -1) {
        if (p === this.sp1 + 1) return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'empty request target')
        this.sp2 = p
      } else {
        return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'extra space in request line')
      }
      return 0
    }
    if (this.sp1 === -1) {
      if (TOKEN_T[b] !== 1) return this.fail('SWY_ERR_BAD_METHOD', 'invalid byte in method')
      if (p - this.lineStart >= MAX_METHOD_BYTES) return this.fail('SWY_ERR_BAD_METHOD', 'method too long')
    } else if (this.sp2 === -1) {
      if (TARGET_T[b] !== 1) return this.fail('SWY_ERR_BAD_REQUEST_LINE', `invalid byte 0x${b.toString(16)} in request target`)
      if (p - this.sp1 > this.limits.maxRequestTargetBytes) return this.fail('SWY_ERR_URI_TOO_LONG', 'request target over limit')
      if (this.targetState !== T_ORIGIN && this.targetState !== T_ABS_PATH) return this.targetByte(p - this.sp1 - 1, b)
    } else {
      // RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT. Refuse at the first byte that
      // cannot fit, rather than hold the connection open until a line end that changes nothing.
      const j = p - this.sp2 - 1
      if (j >= 8 || (j < 5 ? b !== HTTP_SLASH[j] : j === 6 ? b !== 0x2e : !isDigit(b))) {
        return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'malformed HTTP version')
      }
    }
    return 0
  }

  /**
   * Follow the form of the request target as its bytes arrive (RFC 9112 §3.2): origin-form,
   * asterisk-form, or absolute-form with an http(s) scheme and a valid authority. A target that
   * cannot become one of them is refused at the first byte that rules them out.
   */
  private targetByte (j: number, b: number): number {
    switch (this.targetState) {
      case T_START:
        if (b === 0x2f) this.targetState = T_ORIGIN
        else if (b === 0x2a) this.targetState = T_ASTERISK
        else if (LOWER_T[b] === HTTP_SCHEME[0]) this.targetState = T_SCHEME
        else return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'request target is not origin-form or absolute-form')
        return 0
      case T_SCHEME: {
        // "http" is common to both schemes; byte 4 (':' or 's') decides which one this is
        const scheme = j < 4 || (j === 4 ? LOWER_T[b] : LOWER_T[this.buf[this.base + this.sp1 + 5]]) !== 0x73 ? HTTP_SCHEME : HTTPS_SCHEME
        if (LOWER_T[b] !== scheme[j]) return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'request target is not origin-form or absolute-form')
        if (j === scheme.length - 1) {
          this.targetState = T_AUTHORITY
          this.authorityStart = this.sp1 + 1 + scheme.length
        }
        return 0
      }
      case T_AUTHORITY:
        if (b === 0x2f || b === 0x3f) { // '/' or '?' ends the authority
          this.targetState = T_ABS_PATH
          return this.checkAuthority(this.sp1 + 1 + j)
        }
        // RFC 3986 §3.2.2 host and §3.2.3 port bytes only; RFC 9110 §4.2.4: userinfo ('@') is an error
        if (HOST_CHAR[b] !== 1) return this.fail('SWY_ERR_BAD_REQUEST_LINE', `invalid byte 0x${b.toString(16)} in request target authority`)
        return 0
      default: // T_ASTERISK: nothing may follow the '*'
        return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'asterisk-form is a lone "*"')
    }
  }

  /**
   * The authority of an absolute-form target ends before `end` (relative to
   * base): RFC 3986 §3.2 grammar whole, and RFC 9110 §4.2.1: the host must not
   * be empty. Records where its host ends and where the path starts.
   */
  private checkAuthority (end: number): number {
    const base = this.base
    const hostEnd = authorityHostEnd(this.buf, base + this.authorityStart, base + end, false)
    if (hostEnd < 0) return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'absolute-form target without a valid host')
    this.hostStart = this.authorityStart
    this.hostEnd = hostEnd - base
    this.authorityEnd = end
    this.pathStart = end
    return 0
  }

  /** A complete start line [lineStart, lineEnd). Returns 0 to continue. */
  private startLine (lineEnd: number): number {
    this.phase = HEADER_LINE
    this.fieldsStart = lineEnd + 2
    const buf = this.buf
    const base = this.base
    if (this.kind === KIND_REQUEST) {
      if (lineEnd === this.lineStart) {
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line
        // (old clients send CRLF after a POST body); the head limit bounds how many
        this.phase = START_LINE
        return 0
      }
      if (this.sp2 === -1) return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'request line needs method, target and version')
      const v = base + this.sp2 + 1
      if (lineEnd - (this.sp2 + 1) !== 8 || !startsWith(buf, v, HTTP_1_DOT)) {
        if (lineEnd - (this.sp2 + 1) === 8 && startsWith(buf, v, HTTP_SLASH) && isDigit(buf[v + 5]) && buf[v + 6] === 0x2e && isDigit(buf[v + 7])) {
          return this.fail('SWY_ERR_BAD_VERSION', 'unsupported HTTP version')
        }
        return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'malformed HTTP version')
      }
      const minor = buf[v + 7]
      if (!isDigit(minor)) return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'malformed HTTP version')
      // RFC 9112 §2.3: a higher minor version of a major version we implement is processed as the highest we do
      this.versionMinor = minor === 0x30 ? 0 : 1
      this.method = internMethod(buf, base + this.lineStart, base + this.sp1)
      this.targetStart = this.sp1 + 1
      this.targetEnd = this.sp2
      return this.checkTargetForm()
    }
    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    const s = base + this.lineStart
    const len = lineEnd - this.lineStart
    if (len < 12 || !startsWith(buf, s, HTTP_1_DOT) || !isDigit(buf[s + 7]) || buf[s + 8] !== SP ||
        !isDigit(buf[s + 9]) || !isDigit(buf[s + 10]) || !isDigit(buf[s + 11]) || (len > 12 && buf[s + 12] !== SP)) {
      return this.fail('SWY_ERR_UPSTREAM_PROTOCOL', 'malformed status line')
    }
    this.versionMinor = buf[s + 7] === 0x30 ? 0 : 1 // HTTP/1.2 and up as 1.1 (RFC 9112 §2.3)
    this.status = (buf[s + 9] - 0x30) * 100 + (buf[s + 10] - 0x30) * 10 + (buf[s + 11] - 0x30)
    if (this.status < 100) return this.fail('SWY_ERR_UPSTREAM_PROTOCOL', 'status code below 100')
    return 0
  }

  /** RFC 9112 §3.2: origin-form, absolute-form, or asterisk-form for OPTIONS. CONNECT is not proxied. */
  private checkTargetForm (): number {
    // RFC 9110 §9.3.6: CONNECT asks for a tunnel, which a reverse proxy does not open (whatever the target form)
    if (this.method === 'CONNECT') return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'CONNECT is not supported by a reverse proxy')
    switch (this.targetState) {
      case T_ORIGIN:
      case T_ABS_PATH:
        return 0
      case T_ASTERISK: // RFC 9112 §3.2.4
        return this.method === 'OPTIONS' ? 0 : this.fail('SWY_ERR_BAD_REQUEST_LINE', 'asterisk-form is only for OPTIONS')
      case T_AUTHORITY:
        return this.checkAuthority(this.targetEnd)
      default: // a scheme cut short ("http:/")
        return this.fail('SWY_ERR_BAD_REQUEST_LINE', 'request target is not origin-form or absolute-form')
    }
  }

  /** A complete field line, or the empty line that ends the head. Returns 1 when the head is complete. */
  private headerLine (lineEnd: number, next: number): number {
    const lineStart = this.lineStart
    if (lineEnd === lineStart) {
      this.fieldsEnd = lineStart
      return this.finish()
    }
    const colon = this.colon
    if (colon === -1) return this.kind === KIND_REQUEST ? this.fail('SWY_ERR_BAD_HEADER', 'field line without colon') : this.fail('SWY_ERR_UPSTREAM_PROTOCOL', 'field line without colon')
    const n = this.headerCount
    if (n >= this.limits.maxHeaderCount) {
      return this.fail(this.kind === KIND_REQUEST ? 'SWY_ERR_HEADERS_TOO_LARGE' : 'SWY_ERR_UPSTREAM_PROTOCOL', 'too many header fields')
    }
    const buf = this.buf
    const base = this.base
    // trim OWS around the value (RFC 9112 §5.1)
    let vs = colon + 1
    let ve = lineEnd
    while (vs < ve && (buf[base + vs] === SP || buf[base + vs] === HTAB)) vs++
    while (ve > vs && (buf[base + ve - 1] === SP || buf[base + ve - 1] === HTAB)) ve--
    const f = n * F_INTS
    this.fields[f + F_NAME_START] = lineStart
    this.fields[f + F_NAME_END] = colon
    this.fields[f + F_VALUE_START] = vs
    this.fields[f + F_VALUE_END] = ve
    this.fields[f + F_LINE_END] = next
    const kind = classifyHeader(buf, base + lineStart, base + colon)
    this.fieldKinds[n] = kind
    this.headerCount = n + 1
    switch (kind) {
      case H_CONTENT_LENGTH: return this.onContentLength(n, base + vs, base + ve)
      case H_TRANSFER_ENCODING: return this.onTransferEncoding(base + vs, base + ve)
      case H_CONNECTION: return this.onConnection(base + vs, base + ve)
      case H_HOST:
        // RFC 9112 §3.2: more than one Host, or one that is not an authority (RFC 3986 §3.2), is a 400
        if (++this.hostCount > 1 && this.kind === KIND_REQUEST) return this.fail('SWY_ERR_MISSING_HOST', 'more than one Host field')
        if (this.kind !== KIND_REQUEST) return 0
        {
          const hostEnd = authorityHostEnd(buf, base + vs, base + ve, true)
          if (hostEnd < 0) return this.fail('SWY_ERR_MISSING_HOST', 'invalid Host')
          // an absolute-form target's authority wins over Host (RFC 9112 §3.2.2)
          if (this.authorityStart === -1) { this.hostStart = vs; this.hostEnd = hostEnd - base }
        }
        return 0
      case H_EXPECT:
        // RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0 request
        if (this.kind === KIND_REQUEST && this.versionMinor === 1 && equalsLower(buf, base + vs, base + ve, CONTINUE)) this.expectContinue = true
        return 0
      case H_UPGRADE:
        this.hasUpgrade = true
        return 0
      default:
        return 0
    }
  }

  private onContentLength (index: number, s: number, e: number): number {
    // RFC 9110 §8.6: Content-Length = 1*DIGIT. A list or junk is invalid (RFC 9112 §6.3 (5)).
    // Leading zeros are valid digits; only significant ones count toward the 15-digit cap that
    // keeps n exact (§8.6: a recipient MUST prevent integer conversion overflow).
    const buf = this.buf
    // RFC 9112 §6.3 (3): refused at the conflicting line, not after buffering the rest of the head
    if (this.kind === KIND_REQUEST && this.hasTransferEncoding) return this.fail('SWY_ERR_CL_AND_TE', 'both Content-Length and Transfer-Encoding')
    if (s === e) return this.failFraming('SWY_ERR_BAD_CONTENT_LENGTH', 'invalid Content-Length')
    let n = 0
    let significant = 0
    for (let i = s; i < e; i++) {
      const d = buf[i] - 0x30
      if (d < 0 || d > 9) return this.failFraming('SWY_ERR_BAD_CONTENT_LENGTH', 'invalid Content-Length')
      if ((n !== 0 || d !== 0) && ++significant > 15) return this.failFraming('SWY_ERR_BAD_CONTENT_LENGTH', 'Content-Length too large')
      n = n * 10 + d
    }
    if (this.contentLength !== -1) {
      // identical duplicates are one value (RFC 9112 §6.3 (5) lets us accept them); differing ones are an error
      if (this.contentLength !== n) return this.failFraming('SWY_ERR_BAD_CONTENT_LENGTH', 'differing Content-Length values')
      this.fieldSkip[index] = 1
      return 0
    }
    this.contentLength = n
    return 0
  }

  private onTransferEncoding (s: number, e: number): number {
    // RFC 9112 §6.1, §7: a list of transfer codings, chunked at most once and last. The proxy
    // decodes chunked only, so it is all it accepts: any other coding is a 501 from a client
    // (RFC 9112 §6.1, as nginx) and a 502 from an upstream; grammar violations are 400s.
    this.hasTransferEncoding = true
    const request = this.kind === KIND_REQUEST
    if (request) {
      // decided as soon as this line arrives: RFC 9112 §6.1 (TE in HTTP/1.0 is faulty framing), §6.3 (3)
      if (this.versionMinor === 0) return this.fail('SWY_ERR_BAD_TRANSFER_ENCODING', 'Transfer-Encoding in an HTTP/1.0 request')
      if (this.contentLength !== -1) return this.fail('SWY_ERR_CL_AND_TE', 'both Content-Length and Transfer-Encoding')
    }
    switch (readTransferCodings(this.buf, s, e)) {
      case TE_CHUNKED:
        if (this.chunkedSeen) return this.failFraming('SWY_ERR_BAD_TRANSFER_ENCODING', 'chunked applied more than once')
        if (this.otherCodingSeen) return this.failFraming('SWY_ERR_TE_NOT_IMPLEMENTED', 'transfer coding other than chunked')
        this.chunkedSeen = true
        return 0
      case TE_OTHER:
        this.otherCodingSeen = true
        return this.failFraming('SWY_ERR_TE_NOT_IMPLEMENTED', 'transfer coding other than chunked')
      case TE_CHUNKED_TWICE: return this.failFraming('SWY_ERR_BAD_TRANSFER_ENCODING', 'chunked applied more than once')
      case TE_CHUNKED_PARAMS: return this.failFraming('SWY_ERR_BAD_TRANSFER_ENCODING', 'chunked takes no parameters')
      case TE_EMPTY: return this.failFraming('SWY_ERR_BAD_TRANSFER_ENCODING', 'empty Transfer-Encoding')
      default: return this.failFraming('SWY_ERR_BAD_TRANSFER_ENCODING', 'invalid Transfer-Encoding')
    }
  }

  private onConnection (s: number, e: number): number {
    const buf = this.buf
    let i = s
    while (i < e) {
      while (i < e && (buf[i] === SP || buf[i] === HTAB || buf[i] === COMMA)) i++
      if (i >= e) break
      const ts = i
      while (i < e && TOKEN_T[buf[i]] === 1) i++
      const te = i
      while (i < e && (buf[i] === SP || buf[i] === HTAB)) i++
      if (te === ts || (i < e && buf[i] !== COMMA)) return this.failFraming('SWY_ERR_BAD_HEADER', 'invalid Connection field')
      if (equalsLower(buf, ts, te, CLOSE)) this.connectionClose = true
      else if (equalsLower(buf, ts, te, KEEP_ALIVE)) this.connectionKeepAlive = true
      else if (equalsLower(buf, ts, te, UPGRADE)) this.connectionUpgrade = true
      else {
        if (this.connectionTokenCount >= MAX_CONNECTION_TOKENS) return this.failFraming('SWY_ERR_BAD_HEADER', 'too many Connection options')
        const k = this.connectionTokenCount++ * 2
        this.connectionTokens[k] = ts - this.base
        this.connectionTokens[k + 1] = te - this.base
      }
    }
    return 0
  }

  private failFraming (code: ErrorCode, detail: string): number {
    return this.fail(this.kind === KIND_REQUEST ? code : 'SWY_ERR_UPSTREAM_PROTOCOL', detail)
  }

  /** The head is complete: decide framing and persistence. */
  private finish (): number {
    const http11 = this.versionMinor === 1
    if (this.kind === KIND_REQUEST) {
      // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host
      if (http11 && this.hostCount === 0) return this.fail('SWY_ERR_MISSING_HOST', 'HTTP/1.1 request without Host')
      if (this.hasTransferEncoding) {
        // RFC 9112 §6.1: HTTP/1.0 with Transfer-Encoding has faulty framing
        if (!http11) return this.fail('SWY_ERR_BAD_TRANSFER_ENCODING', 'Transfer-Encoding in an HTTP/1.0 request')
        // RFC 9112 §6.3 (3): both present -> smuggling attempt; reject
        if (this.contentLength !== -1) return this.fail('SWY_ERR_CL_AND_TE', 'both Content-Length and Transfer-Encoding')
        // onTransferEncoding let only chunked through, exactly once
        this.bodyKind = BODY_CHUNKED
      } else {
        this.bodyKind = this.contentLength > 0 ? BODY_LENGTH : BODY_NONE
      }
      this.keepAlive = http11 ? !this.connectionClose : (this.connectionKeepAlive && !this.connectionClose)
      return 1
    }
    // response
    const status = this.status
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing; a proxy
    // answers 502 rather than guess (§6.3 (5))
    if (this.hasTransferEncoding && !http11) return this.fail('SWY_ERR_UPSTREAM_PROTOCOL', 'Transfer-Encoding in an HTTP/1.0 response')
    if (this.hasTransferEncoding && this.contentLength !== -1) {
      // RFC 9112 §6.3 (3): "ought to be handled as an error"; we do, rather than forward it
      return this.fail('SWY_ERR_UPSTREAM_PROTOCOL', 'both Content-Length and Transfer-Encoding')
    }
    if (this.noBodyExpected || status < 200 || status === 204 || status === 304) {
      this.bodyKind = BODY_NONE
    } else if (this.hasTransferEncoding) {
      this.bodyKind = BODY_CHUNKED // onTransferEncoding let only chunked through, exactly once
    } else if (this.contentLength !== -1) {
      this.bodyKind = this.contentLength > 0 ? BODY_LENGTH : BODY_NONE
    } else {
      this.bodyKind = BODY_CLOSE
    }
    this.keepAlive = this.bodyKind !== BODY_CLOSE &&
      (http11 ? !this.connectionClose : (this.connectionKeepAlive && !this.connectionClose))
    return 1
  }
}

const EMPTY = Buffer.alloc(0)

function isDigit (b: number): boolean { return b >= 0x30 && b <= 0x39 }

function startsWith (buf: Uint8Array, at: number, prefix: Uint8Array): boolean {
  for (let i = 0; i < prefix.length; i++) if (buf[at + i] !== prefix[i]) return false
  return true
}

function internMethod (buf: Buffer, s: number, e: number): string {
  const len = e - s
  outer:
  for (let m = 0; m < METHOD_BYTES.length; m++) {
    const bytes = METHOD_BYTES[m]
    if (bytes.length !== len) continue
    for (let i = 0; i < len; i++) if (buf[s + i] !== bytes[i]) continue outer
    return METHODS[m]
  }
  return buf.latin1Slice(s, e)
}

declare global {
  interface Buffer {
    /** Node's fast latin1 decoder (what toString('latin1', s, e) calls after checking its arguments). */
    latin1Slice (start: number, end: number): string
  }
}
