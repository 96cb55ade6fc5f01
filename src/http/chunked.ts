/**
 * A validating scanner for chunked bodies (RFC 9112 §7.1) that also says where the
 * data is, so the proxy can send its own framing instead of the peer's bytes: chunk
 * sizes with leading zeros, chunk extensions and framing fields in trailers are what
 * lenient back ends frame differently (request smuggling), so none of them is copied.
 * STYLE.md: "Framing is the proxy's own".
 *
 * execute(buf, start, end) returns the index just past the body when it ends
 * inside [start, end), CHUNKED_MORE when every byte belongs to the body and
 * more are needed, or CHUNKED_ERROR (`error` names the problem). Data bytes are
 * skipped in one step, not byte by byte, and recorded as spans of buf:
 *
 *   buf:   0005;x=y\r\nhello\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n
 *                      ^    ^        ^  ^
 *                      s0   e0       s1 e1
 *   spans = [s0, e0, s1, e1, ...], spanCount = 2, spanBytes = 8: for this call only, as
 *   absolute indexes into buf (Int32Array: buffers stay far below 2 GiB)
 *
 * encode() turns one call's spans into canonical bytes: a single chunk
 * `8\r\nhelloabc\r\n`, then, if the body ended in that call, `0\r\n`, the kept
 * trailer lines and `\r\n` (or the bare data when de-chunking for HTTP/1.0).
 */
import { CR, LF, SP, HTAB, SEMICOLON, COLON, EQUALS, DQUOTE, BACKSLASH, HEX, TOKEN, FIELD_VALUE, ascii } from './tables'
import { isDroppedTrailer } from './trailers'

export const CHUNKED_MORE = -1
export const CHUNKED_ERROR = -2

// chunk-size line: chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ) CRLF
const SIZE_START = 0
const SIZE = 1
const SIZE_WS = 2 //         BWS after the size: only ';' may follow
const EXT_NAME_START = 3 //  after ';'
const EXT_NAME = 4
const EXT_NAME_WS = 5 //     BWS after a name: '=' or ';' may follow
const EXT_VALUE_START = 6 // after '='
const EXT_TOKEN = 7
const EXT_QUOTED = 8
const EXT_QUOTED_PAIR = 9 // after '\' inside a quoted value
const EXT_QUOTE_END = 10
const EXT_VALUE_WS = 11 //   BWS after a value: only ';' may follow
const SIZE_LF = 12
const DATA = 13
const DATA_CR = 14
const DATA_LF = 15
const TRAILER_START = 16
const TRAILER_NAME = 17
const TRAILER_VALUE = 18
const TRAILER_LF = 19
const END_LF = 20
const DONE = 21

const MAX_SIZE_DIGITS = 13 // 16^13 > 2^52: larger chunks are refused, not overflowed
const MAX_LINE_BYTES = 4096 // the whole chunk-size line, extensions included
const INITIAL_SPANS = 16 //      pairs; a typical read holds one or two chunks
const KEEP_SPANS = 1024 //       reset() drops a span array grown past this (a 1-byte-chunk flood)
const INITIAL_TRAILERS = 256 //  bytes, allocated on the first trailer field only
const KEEP_TRAILERS = 1024 //    reset() drops a trailer buffer grown past this
const COPY_LOOP_MAX = 32 //      spans shorter than this are copied byte by byte (no view)

const HEX_DIGITS = ascii('0123456789abcdef')
const EMPTY = Buffer.alloc(0)

/** Number of lowercase hex digits of n (a non-negative integer up to 2^53). */
export function hexLength (n: number): number {
  let digits = 1
  while (n >= 16) { n = Math.floor(n / 16); digits++ }
  return digits
}

/** Writes `HEX(n)\r\n` (lowercase, no leading zeros, no extensions) at out[offset]; returns the new offset. */
export function writeChunkSizeLine (out: Uint8Array, offset: number, n: number): number {
  const digits = hexLength(n)
  for (let i = offset + digits - 1; i >= offset; i--) {
    out[i] = HEX_DIGITS[n % 16]
    n = Math.floor(n / 16)
  }
  out[offset + digits] = CR
  out[offset + digits + 1] = LF
  return offset + digits + 2
}

/** `HEX(n)\r\n` in a new Buffer: the line before n data bytes (n = 0 starts the last chunk). */
export function chunkSizeLine (n: number): Buffer {
  const line = Buffer.allocUnsafe(hexLength(n) + 2)
  writeChunkSizeLine(line, 0, n)
  return line
}

/** The CRLF after chunk data, for callers that write spans without copying them. */
export const CRLF: Buffer = Buffer.from('\r\n', 'latin1')

export class ChunkedScanner {
  private state = SIZE_START
  private size = 0
  private digits = 0
  private lineBytes = 0
  private trailerBytes = 0
  private readonly maxTrailerBytes: number
  error = ''
  /** Data bytes seen so far (the decoded length). */
  dataBytes = 0

  // Set by each execute() for that call only (absolute indexes into its buf).
  /** Data spans found by the last execute(): spans[2i] = start, spans[2i + 1] = end (exclusive). */
  spans = new Int32Array(INITIAL_SPANS * 2)
  spanCount = 0
  /** Sum of the span lengths of the last execute(). */
  spanBytes = 0
  /** The body ended during the last execute() (its return value was an index). */
  endedThisCall = false

  // Kept trailer lines, already canonical (`name: value\r\n`), in trailerBuf[0, trailerLength).
  // The line being read is written after them as `name: value` and removed if its name is dropped.
  private trailerBuf: Buffer | null = null
  private trailerLength = 0
  private lineStart = 0 //  where the current line's name starts in trailerBuf
  private colonEnd = 0 //   just past its ':'
  private valueEnd = 0 //   just past its last non-OWS value byte (colonEnd while there is none)
  private dropLine = false

  constructor (maxTrailerBytes: number) {
    this.maxTrailerBytes = maxTrailerBytes
  }

  reset (): void {
    this.state = SIZE_START
    this.size = 0
    this.digits = 0
    this.lineBytes = 0
    this.trailerBytes = 0
    this.error = ''
    this.dataBytes = 0
    if (this.spans.length > KEEP_SPANS * 2) this.spans = new Int32Array(INITIAL_SPANS * 2)
    this.spanCount = 0
    this.spanBytes = 0
    this.endedThisCall = false
    if (this.trailerBuf !== null && this.trailerBuf.length > KEEP_TRAILERS) this.trailerBuf = null
    this.trailerLength = 0
    this.lineStart = 0
    this.colonEnd = 0
    this.valueEnd = 0
    this.dropLine = false
  }

  get done (): boolean { return this.state === DONE }

  private fail (why: string): number {
    this.error = why
    return CHUNKED_ERROR
  }

  private growSpans (): void {
    const bigger = new Int32Array(this.spans.length * 2)
    bigger.set(this.spans)
    this.spans = bigger
  }

  /** Appends one byte to the trailer buffer, which grows by doubling (bounded: maxTrailerBytes plus 3 per line). */
  private putTrailerByte (b: number): void {
    let t = this.trailerBuf
    if (t === null || this.trailerLength === t.length) {
      const bigger = Buffer.allocUnsafe(t === null ? INITIAL_TRAILERS : t.length * 2)
      if (t !== null) t.copy(bigger, 0, 0, this.trailerLength)
      this.trailerBuf = t = bigger
    }
    t[this.trailerLength++] = b
  }

  execute (buf: Uint8Array, start: number, end: number): number {
    this.spanCount = 0
    this.spanBytes = 0
    this.endedThisCall = false
    let p = start
    let state = this.state
    while (p < end) {
      const b = buf[p]
      if (state <= EXT_VALUE_WS && ++this.lineBytes > MAX_LINE_BYTES) return this.fail('chunk size line too long')
      switch (state) {
        case SIZE_START: {
          const h = HEX[b]
          if (h === 0xff) return this.fail('chunk size expected')
          this.size = h
          this.digits = h === 0 ? 0 : 1
          state = SIZE
          p++
          break
        }
        case SIZE: {
          const h = HEX[b]
          if (h !== 0xff) {
            // leading zeros are valid (chunk-size = 1*HEXDIG) and do not count toward the cap
            if ((this.size !== 0 || h !== 0) && ++this.digits > MAX_SIZE_DIGITS) return this.fail('chunk size too large')
            this.size = this.size * 16 + h
            p++
          } else if (b === CR) {
            state = SIZE_LF
            p++
          } else if (b === SEMICOLON) {
            state = EXT_NAME_START
            p++
          } else if (b === SP || b === HTAB) {
            state = SIZE_WS // RFC 9112 §7.1.1: BWS before ';'
            p++
          } else {
            return this.fail('invalid byte in chunk size')
          }
          break
        }
        case SIZE_WS:
          if (b === SP || b === HTAB) p++
          else if (b === SEMICOLON) { state = EXT_NAME_START; p++ } else return this.fail('invalid byte after chunk size')
          break
        // Chunk extensions are never forwarded (encode() drops them), but they are still held to
        // RFC 9112 §7.1.1 exactly (BWS, token names, token or quoted-string values): where a
        // malformed one ends is a guess, and so would be where the chunk-size line ends.
        case EXT_NAME_START:
          if (TOKEN[b] === 1) state = EXT_NAME
          else if (b !== SP && b !== HTAB) return this.fail('invalid chunk extension name')
          p++
          break
        case EXT_NAME:
          if (TOKEN[b] === 1) { p++; break }
          if (b === CR) state = SIZE_LF
          else if (b === SEMICOLON) state = EXT_NAME_START
          else if (b === EQUALS) state = EXT_VALUE_START
          else if (b === SP || b === HTAB) state = EXT_NAME_WS
          else return this.fail('invalid byte in chunk extension name')
          p++
          break
        case EXT_NAME_WS:
          if (b === SEMICOLON) state = EXT_NAME_START
          else if (b === EQUALS) state = EXT_VALUE_START
          else if (b !== SP && b !== HTAB) return this.fail('invalid byte after chunk extension name')
          p++
          break
        case EXT_VALUE_START:
          if (TOKEN[b] === 1) state = EXT_TOKEN
          else if (b === DQUOTE) state = EXT_QUOTED
          else if (b !== SP && b !== HTAB) return this.fail('invalid chunk extension value')
          p++
          break
        case EXT_TOKEN:
          if (TOKEN[b] === 1) { p++; break }
          if (b === CR) state = SIZE_LF
          else if (b === SEMICOLON) state = EXT_NAME_START
          else if (b === SP || b === HTAB) state = EXT_VALUE_WS
          else return this.fail('invalid byte in chunk extension value')
          p++
          break
        case EXT_QUOTED:
          // RFC 9110 §5.6.4: qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
          if (b === DQUOTE) state = EXT_QUOTE_END
          else if (b === BACKSLASH) state = EXT_QUOTED_PAIR
          else if (FIELD_VALUE[b] !== 1) return this.fail('invalid byte in quoted chunk extension value')
          p++
          break
        case EXT_QUOTED_PAIR:
          // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
          if (FIELD_VALUE[b] !== 1) return this.fail('invalid byte in quoted chunk extension value')
          state = EXT_QUOTED
          p++
          break
        case EXT_QUOTE_END:
          if (b === CR) state = SIZE_LF
          else if (b === SEMICOLON) state = EXT_NAME_START
          else if (b === SP || b === HTAB) state = EXT_VALUE_WS
          else return this.fail('invalid byte after quoted chunk extension value')
          p++
          break
        case EXT_VALUE_WS:
          if (b === SEMICOLON) state = EXT_NAME_START
          else if (b !== SP && b !== HTAB) return this.fail('invalid byte after chunk extension value')
          p++
          break
        case SIZE_LF:
          if (b !== LF) return this.fail('bare CR in chunk size line')
          p++
          state = this.size === 0 ? TRAILER_START : DATA
          break
        case DATA: {
          const take = Math.min(this.size, end - p)
          const i = this.spanCount * 2
          if (i === this.spans.length) this.growSpans()
          this.spans[i] = p
          this.spans[i + 1] = p + take
          this.spanCount++
          this.spanBytes += take
          p += take
          this.size -= take
          this.dataBytes += take
          if (this.size === 0) state = DATA_CR
          break
        }
        case DATA_CR:
          if (b !== CR) return this.fail('chunk data not followed by CRLF')
          state = DATA_LF
          p++
          break
        case DATA_LF:
          if (b !== LF) return this.fail('chunk data not followed by CRLF')
          state = SIZE_START
          this.lineBytes = 0
          p++
          break
        // Trailer fields are held to the header-field rules (RFC 9112 §5.1, §5.2; RFC 9110
        // §5.5): a token name, no whitespace before the colon, no obs-fold, field-value bytes.
        case TRAILER_START:
          if (b === CR) { state = END_LF; p++; break }
          if (TOKEN[b] !== 1) return this.fail(b === SP || b === HTAB ? 'obsolete line folding in trailer section' : 'invalid trailer field')
          state = TRAILER_NAME
          this.lineStart = this.trailerLength
          this.putTrailerByte(b)
          p++
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large')
          break
        case TRAILER_NAME:
          if (b === COLON) {
            state = TRAILER_VALUE
            // RFC 9110 §6.5.1: fields that frame, route, authenticate or control the message are dropped
            this.dropLine = isDroppedTrailer(this.trailerBuf as Buffer, this.lineStart, this.trailerLength)
            if (this.dropLine) this.trailerLength = this.lineStart
            else {
              this.putTrailerByte(COLON)
              this.colonEnd = this.valueEnd = this.trailerLength
              this.putTrailerByte(SP)
            }
          } else if (TOKEN[b] === 1) this.putTrailerByte(b)
          else return this.fail(b === SP || b === HTAB ? 'whitespace before colon in trailer field' : 'invalid trailer field name')
          p++
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large')
          break
        case TRAILER_VALUE:
          if (b === CR) {
            state = TRAILER_LF
            if (!this.dropLine) this.trailerLength = this.valueEnd // trailing OWS, or ' ' of an empty value
          } else if (FIELD_VALUE[b] !== 1) {
            return this.fail('invalid byte in trailer field')
          } else if (!this.dropLine) {
            if (b !== SP && b !== HTAB) {
              this.putTrailerByte(b)
              this.valueEnd = this.trailerLength
            } else if (this.valueEnd !== this.colonEnd) this.putTrailerByte(b) // leading OWS is skipped
          }
          p++
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large')
          break
        case TRAILER_LF:
          if (b !== LF) return this.fail('bare CR in trailer section')
          if (!this.dropLine) { this.putTrailerByte(CR); this.putTrailerByte(LF) }
          state = TRAILER_START
          p++
          break
        case END_LF:
          if (b !== LF) return this.fail('bare CR at end of chunked body')
          this.state = DONE
          this.endedThisCall = true
          return p + 1
        default: // DONE: caller must not feed more
          return p
      }
    }
    this.state = state
    return CHUNKED_MORE
  }

  /**
   * The kept trailer lines (`name: value\r\n` each, names as received, values without
   * surrounding OWS) once the body is done, else empty. A view of a per-scanner buffer:
   * valid until reset().
   */
  keptTrailers (): Buffer {
    if (this.state !== DONE || this.trailerLength === 0) return EMPTY
    return (this.trailerBuf as Buffer).subarray(0, this.trailerLength)
  }

  /**
   * Bytes encodeInto() writes for the last execute(): `HEX(spanBytes)\r\n<data>\r\n` when
   * there was data, then `0\r\n<kept trailers>\r\n` when the body ended; with dechunk, the
   * data alone. 0 after an error: a rejected body is not forwarded any further.
   */
  encodedLength (dechunk: boolean): number {
    if (this.error !== '') return 0
    const data = this.spanBytes
    if (dechunk) return data
    let n = data > 0 ? hexLength(data) + 4 + data : 0
    if (this.endedThisCall) n += 5 + this.trailerLength
    return n
  }

  /**
   * Writes the canonical bytes of the last execute() over `src` (the buf it was given)
   * into out[offset...], which must have encodedLength(dechunk) bytes free; returns the new offset.
   */
  encodeInto (src: Uint8Array, out: Uint8Array, offset: number, dechunk: boolean): number {
    if (this.error !== '') return offset
    let pos = offset
    if (this.spanBytes > 0) {
      if (!dechunk) pos = writeChunkSizeLine(out, pos, this.spanBytes)
      const spans = this.spans
      for (let i = 0, n = this.spanCount * 2; i < n; i += 2) {
        const s = spans[i]
        const e = spans[i + 1]
        if (e - s < COPY_LOOP_MAX) {
          for (let j = s; j < e; j++) out[pos++] = src[j]
        } else {
          out.set(src.subarray(s, e), pos)
          pos += e - s
        }
      }
      if (!dechunk) { out[pos++] = CR; out[pos++] = LF }
    }
    if (this.endedThisCall && !dechunk) pos = this.writeLastChunk(out, pos)
    return pos
  }

  /** The canonical bytes of the last execute() in one new Buffer, or null when there is nothing to send. */
  encode (src: Uint8Array, dechunk: boolean): Buffer | null {
    const n = this.encodedLength(dechunk)
    if (n === 0) return null
    const out = Buffer.allocUnsafe(n)
    this.encodeInto(src, out, 0, dechunk)
    return out
  }

  /**
   * `0\r\n<kept trailers>\r\n` in a new Buffer once the body is done (else null), for callers
   * that send the spans themselves (chunkSizeLine + views of src + CRLF) instead of encode().
   */
  lastChunk (): Buffer | null {
    if (this.state !== DONE) return null
    const out = Buffer.allocUnsafe(5 + this.trailerLength)
    this.writeLastChunk(out, 0)
    return out
  }

  private writeLastChunk (out: Uint8Array, pos: number): number {
    out[pos++] = 0x30 // '0'
    out[pos++] = CR
    out[pos++] = LF
    if (this.trailerLength > 0) {
      out.set((this.trailerBuf as Buffer).subarray(0, this.trailerLength), pos)
      pos += this.trailerLength
    }
    out[pos++] = CR
    out[pos++] = LF
    return pos
  }
}
