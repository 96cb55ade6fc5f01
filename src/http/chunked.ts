/**
 * A validating scanner for chunked bodies (RFC 9112 §7.1). The proxy forwards
 * chunked bytes as they are, so this does not copy or decode: it walks the
 * framing, rejects anything malformed before it is forwarded, and says where
 * the body ends. Data bytes are skipped in one step, not byte by byte.
 *
 * execute(buf, start, end) returns the index just past the body when it ends
 * inside [start, end), CHUNKED_MORE when every byte belongs to the body and
 * more are needed, or CHUNKED_ERROR (`error` names the problem).
 */
import { CR, LF, SP, HTAB, SEMICOLON, COLON, EQUALS, DQUOTE, BACKSLASH, HEX, TOKEN, FIELD_VALUE } from './tables'

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
  }

  get done (): boolean { return this.state === DONE }

  private fail (why: string): number {
    this.error = why
    return CHUNKED_ERROR
  }

  execute (buf: Uint8Array, start: number, end: number): number {
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
        // Chunk extensions are forwarded untouched, but only when they match RFC 9112 §7.1.1
        // exactly (BWS, token names, token or quoted-string values): a peer that parses a
        // malformed extension differently could disagree on where the line, hence the chunk, ends.
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
        case TRAILER_START:
          if (b === CR) { state = END_LF; p++; break }
          if (TOKEN[b] !== 1) return this.fail('invalid trailer field')
          state = TRAILER_NAME
          p++
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large')
          break
        case TRAILER_NAME:
          if (b === COLON) state = TRAILER_VALUE
          else if (TOKEN[b] !== 1) return this.fail('invalid trailer field name')
          p++
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large')
          break
        case TRAILER_VALUE:
          if (b === CR) state = TRAILER_LF
          else if (FIELD_VALUE[b] !== 1) return this.fail('invalid byte in trailer field')
          p++
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large')
          break
        case TRAILER_LF:
          if (b !== LF) return this.fail('bare CR in trailer section')
          state = TRAILER_START
          p++
          break
        case END_LF:
          if (b !== LF) return this.fail('bare CR at end of chunked body')
          this.state = DONE
          return p + 1
        default: // DONE: caller must not feed more
          return p
      }
    }
    this.state = state
    return CHUNKED_MORE
  }
}
