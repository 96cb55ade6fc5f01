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
import { CR, LF, SP, HTAB, SEMICOLON, COLON, HEX, TOKEN, FIELD_VALUE } from './tables'

export const CHUNKED_MORE = -1
export const CHUNKED_ERROR = -2

const SIZE_START = 0
const SIZE = 1
const SIZE_WS = 2 //      BWS after the size, before ';' or CR
const EXT = 3
const SIZE_LF = 4
const DATA = 5
const DATA_CR = 6
const DATA_LF = 7
const TRAILER_START = 8
const TRAILER_NAME = 9
const TRAILER_VALUE = 10
const TRAILER_LF = 11
const END_LF = 12
const DONE = 13

const MAX_SIZE_DIGITS = 13 // 16^13 > 2^52: larger chunks are refused, not overflowed
const MAX_EXT_BYTES = 4096

export class ChunkedScanner {
  private state = SIZE_START
  private size = 0
  private digits = 0
  private extBytes = 0
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
    this.extBytes = 0
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
      switch (state) {
        case SIZE_START: {
          const h = HEX[b]
          if (h === 0xff) return this.fail('chunk size expected')
          this.size = h
          this.digits = 1
          state = SIZE
          p++
          break
        }
        case SIZE: {
          const h = HEX[b]
          if (h !== 0xff) {
            if (++this.digits > MAX_SIZE_DIGITS) return this.fail('chunk size too large')
            this.size = this.size * 16 + h
            p++
          } else if (b === CR) {
            state = SIZE_LF
            p++
          } else if (b === SEMICOLON) {
            state = EXT
            this.extBytes = 0
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
          else if (b === SEMICOLON) { state = EXT; this.extBytes = 0; p++ } else return this.fail('invalid byte after chunk size')
          break
        case EXT:
          // chunk extensions are forwarded untouched; we only refuse control bytes so that
          // every peer agrees where the line ends
          if (b === CR) { state = SIZE_LF; p++; break }
          if (FIELD_VALUE[b] !== 1) return this.fail('invalid byte in chunk extension')
          if (++this.extBytes > MAX_EXT_BYTES) return this.fail('chunk extension too long')
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
