/**
 * Reads the final status code from the start of an HTTP/1.x response, for the
 * active prober. Only the status line matters: nothing after the code is
 * parsed, and a stream that cannot be HTTP is rejected from its first bytes
 * rather than after a timeout.
 *
 * RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
 *              HTTP-version = "HTTP/" DIGIT "." DIGIT
 */
import { SLASH, DOT, SP, CR, LF } from '../http/tables'

/** Not enough bytes yet to know. */
export const STATUS_NEED_MORE = 0
/** Not an HTTP/1.x status line. */
export const STATUS_INVALID = -1

const H = 0x48
const T = 0x54
const P = 0x50
const DIGIT_0 = 0x30
const DIGIT_9 = 0x39
const PREFIX = [H, T, T, P, SLASH] as const
/** "HTTP/1.1 200" is 12 bytes; the 13th must end the code. */
const STATUS_LINE_MIN = 13

function isDigit (b: number): boolean {
  return b >= DIGIT_0 && b <= DIGIT_9
}

/** The status code of the status line at `at`, or STATUS_NEED_MORE / STATUS_INVALID. */
export function readStatusLine (buf: Uint8Array, at: number): number {
  const end = Math.min(buf.length, at + STATUS_LINE_MIN)
  for (let i = at; i < end; i++) {
    const b = buf[i]
    const offset = i - at
    let ok: boolean
    if (offset < 5) ok = b === PREFIX[offset]
    else if (offset === 5 || offset === 7) ok = isDigit(b)
    else if (offset === 6) ok = b === DOT
    else if (offset === 8) ok = b === SP
    else if (offset < 12) ok = isDigit(b)
    // RFC 9112 §4 wants SP after the code even with an empty reason; some
    // servers end the line right there, which costs nothing to accept.
    else ok = b === SP || b === CR || b === LF
    if (!ok) return STATUS_INVALID
  }
  if (end - at < STATUS_LINE_MIN) return STATUS_NEED_MORE
  const status = (buf[at + 9] - DIGIT_0) * 100 + (buf[at + 10] - DIGIT_0) * 10 + (buf[at + 11] - DIGIT_0)
  // RFC 9110 §15: the first digit is the class, 1 to 5.
  return status >= 100 && status <= 599 ? status : STATUS_INVALID
}

/** Index just past the blank line ending the head that starts at `at`, or -1. */
function headEnd (buf: Buffer, at: number): number {
  let lf = buf.indexOf(LF, at)
  while (lf !== -1) {
    const next = lf + 1
    if (next < buf.length && buf[next] === LF) return next + 1
    if (next + 1 < buf.length && buf[next] === CR && buf[next + 1] === LF) return next + 2
    lf = buf.indexOf(LF, next)
  }
  return -1
}

/**
 * The final status of a response, skipping interim 1xx responses (RFC 9110
 * §15.2: a client must accept any number of them before the final one).
 * 101 is final: it ends HTTP/1.1 on that connection (RFC 9110 §15.2.2).
 */
export function readFinalStatus (buf: Buffer): number {
  let at = 0
  for (;;) {
    const status = readStatusLine(buf, at)
    if (status <= 0 || status >= 200 || status === 101) return status
    const next = headEnd(buf, at)
    if (next === -1) return STATUS_NEED_MORE
    at = next
  }
}
