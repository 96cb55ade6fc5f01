/**
 * The access log (one line per request, asynchronous) and the warnings for
 * rejected requests and upstream trouble. Fields are flat and named the same
 * on every line so the log can be queried. It reads an AccessRecord, which the
 * client connection fills in: the log knows nothing of connections.
 *
 * A line is built as bytes straight into the thread's log buffer
 * (src/log-sink.ts): request fields are copied from the parser's buffer with
 * JSON escaping byte by byte, numbers written as digits, the time formatted
 * once per millisecond. No string is built for a line, nothing is
 * serialised generically (JSON.stringify, pino's serializer): the line must
 * cost well under 2 µs (bench/micro/access-log.ts measures it).
 *
 * With the native addon the same bytes are written by one call into C
 * (native/access-line.c, under half the JavaScript's cost): this module
 * finds the fields and passes their spans, numbers and names
 * (src/proxy/access-line-native.ts); the JavaScript builder below stays the
 * fallback and the reference (test/unit/access-line.test.ts compares the two
 * on random records).
 */
import { performance } from 'node:perf_hooks'
import { monotonicNow } from './clock'
import { accessLog, logger } from '../log'
import type { UpstreamEntry } from '../shared/state'
import type { ErrorCode } from '../errors'
import { H_HOST, H_REFERER, H_USER_AGENT } from '../http/header-names'
import type { HeadParser } from '../http/head-parser'
import { NAME_ADDRESS, NAME_FLAG, NAME_POOL, NAME_ROUTE, NativeLineBuilder } from './access-line-native'

/** What one access-log line says about a request. */
export interface AccessRecord {
  readonly clientIp: string
  readonly method: string
  /** The request target as received ('' when the request line never completed). */
  readonly target: string
  /** The request's head as parsed (target, Host, User-Agent, Referer, version are read from its bytes). */
  readonly parser: HeadParser
  readonly status: number
  readonly entry: UpstreamEntry | null
  readonly bytesOut: number
  /** Request bytes read from the client: head and body. */
  readonly bytesIn: number
  /** performance.now() when the request's first byte was read. */
  readonly startedAt: number
  /** Milliseconds from sending the request upstream to its response head; -1 when none came. */
  readonly upstreamMs: number
  /** The request's ID (request IDs, when on); '' for none. */
  readonly requestId?: string
  /** Times the request was tried again (resilience); absent: not counted. */
  readonly retries?: number
  /** The route that matched and the pool the request went to (routing); null or absent: none. */
  readonly route?: { readonly name: string } | null
  readonly pool?: { readonly name: string } | null
  /** The client's scheme ('https' on a TLS listener); absent: plain HTTP only. */
  readonly proto?: string
  /** Envoy-style response flag from the error catalogue, '-' for none. */
  readonly flag: string
}

// ---- the time, formatted once per millisecond ----
/** performance.timeOrigin, fixed for the thread's life (its getter is a call per read). */
const TIME_ORIGIN = performance.timeOrigin
let timeMs = -1
const timeBytes = Buffer.alloc(24)

function putTime (out: Buffer, pos: number, nowMs: number): number {
  if (nowMs !== timeMs) {
    timeMs = nowMs
    timeBytes.latin1Write(new Date(nowMs).toISOString(), 0)
  }
  for (let i = 0; i < 24; i++) out[pos + i] = timeBytes[i]
  return pos + 24
}

// ---- JSON pieces written as bytes ----

/** Bytes that must be escaped in a JSON string: controls, '"', '\', and non-ASCII (written as \u00XX, their latin1 reading). */
const ESCAPE = ((): Uint8Array => {
  const t = new Uint8Array(256)
  for (let b = 0; b < 256; b++) t[b] = b < 0x20 || b === 0x22 || b === 0x5c || b >= 0x7f ? 1 : 0
  return t
})()
const HEX = '0123456789abcdef'

function putEscapedByte (out: Buffer, pos: number, b: number): number {
  out[pos] = 0x5c
  if (b === 0x22 || b === 0x5c) { out[pos + 1] = b; return pos + 2 }
  out[pos + 1] = 0x75 // \u00XX
  out[pos + 2] = 0x30
  out[pos + 3] = 0x30
  out[pos + 4] = HEX.charCodeAt(b >> 4)
  out[pos + 5] = HEX.charCodeAt(b & 15)
  return pos + 6
}

/**
 * The line's own JSON text (keys, punctuation) as bytes made once: copied by
 * a loop when short, by TypedArray.set when longer (a builtin call costs about
 * what a 12-byte loop does; see bench/micro/access-log.ts).
 */
function putRaw (out: Buffer, pos: number, json: Uint8Array): number {
  const n = json.length
  if (n > 12) { out.set(json, pos); return pos + n }
  for (let i = 0; i < n; i++) out[pos + i] = json[i]
  return pos + n
}

function ascii (text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0))
}

const K_NULL = ascii('null')
const K_CLIENT = ascii('"client":"')
const K_METHOD = ascii('","method":"')
const K_PATH = ascii('","path":"')
const K_STATUS = ascii('","status":')
const K_UPSTREAM = ascii(',"upstream":"')
const K_UPSTREAM_NULL = ascii(',"upstream":null')
const K_BYTES = ascii(',"bytes":')
const K_BYTESIN = ascii(',"bytesIn":')
const K_DURATIONMS = ascii(',"durationMs":')
const K_UPSTREAMMS = ascii(',"upstreamMs":')
const K_FLAG = ascii(',"flag":"')
const K_HOST = ascii(',"host":')
const K_HTTPVERSION = ascii(',"httpVersion":"1.')
const K_HTTPVERSION_NULL = ascii(',"httpVersion":null')
const K_REQUESTID = ascii(',"requestId":"')
const K_USERAGENT = ascii(',"userAgent":')
const K_REFERER = ascii(',"referer":')
const K_RETRIES = ascii(',"retries":')
const K_ROUTE = ascii(',"route":"')
const K_POOL = ascii(',"pool":"')
const K_TLS_TRUE = ascii(',"tls":true')
const K_TLS_FALSE = ascii(',"tls":false')

/** A string's characters (latin1 and ASCII only, as every field here is) inside a JSON string. */
function putText (out: Buffer, pos: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i) & 0xff
    if (ESCAPE[c] === 0) out[pos++] = c
    else pos = putEscapedByte(out, pos, c)
  }
  return pos
}

/** src[start, end) inside a JSON string. */
function putBytes (out: Buffer, pos: number, src: Buffer, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    const b = src[i]
    if (ESCAPE[b] === 0) out[pos++] = b
    else pos = putEscapedByte(out, pos, b)
  }
  return pos
}

/** 2^53: numbers are written up to it (as native/access-line.c does); none comes near. */
const MAX_EXACT = 2 ** 53

/** A non-negative integer's digits (anything else, none should be, reads 0 as in native/access-line.c). */
function putInt (out: Buffer, pos: number, n: number): number {
  if (!(n > 0)) n = 0
  else if (n > MAX_EXACT) n = MAX_EXACT // past it a double's digits are not what halving by 10 gives (and Infinity never ends)
  if (n < 10) { out[pos] = 0x30 + n; return pos + 1 }
  let digits = 1
  for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++
  let p = pos + digits
  for (let m = n; p > pos; m = Math.floor(m / 10)) out[--p] = 0x30 + (m % 10)
  return pos + digits
}

/** Milliseconds with three decimals (microseconds); a negative duration (none should be) reads 0.000. */
function putMillis (out: Buffer, pos: number, ms: number): number {
  const us = Math.min(Math.round((ms > 0 ? ms : 0) * 1000), MAX_EXACT)
  pos = putInt(out, pos, Math.floor(us / 1000))
  const frac = us % 1000
  out[pos] = 0x2e
  out[pos + 1] = 0x30 + Math.floor(frac / 100)
  out[pos + 2] = 0x30 + Math.floor(frac / 10) % 10
  out[pos + 3] = 0x30 + frac % 10
  return pos + 4
}

/** The first Host, User-Agent and Referer fields of the head findLogged() looked at (-1: absent). */
let hostAt = -1
let userAgentAt = -1
let refererAt = -1

/** One pass over the head's fields for the three the line shows (the parser classified them). */
function findLogged (p: HeadParser): void {
  hostAt = userAgentAt = refererAt = -1
  const kinds = p.fieldKinds
  for (let i = 0; i < p.headerCount; i++) {
    const kind = kinds[i]
    if (kind === H_HOST && hostAt === -1) hostAt = i
    else if (kind === H_USER_AGENT && userAgentAt === -1) userAgentAt = i
    else if (kind === H_REFERER && refererAt === -1) refererAt = i
  }
}

/** Space a line can need at most: fixed text, and every variable byte escaped (6 bytes). */
const FIXED_BYTES = 1024

// ---- the native builder (native/access-line.c, through src/proxy/access-line-native.ts) ----

/** A line's spans of the request head, its numbers and its names, which the builders write from, in the order of native/access-line.c's N_* (a span's start is -1 when it is absent). */
const nums = new Float64Array(24)
/** This thread's C builder (set up with its prefix and bindings); undefined: not looked up yet. */
let nativeBuilder: NativeLineBuilder | null | undefined
/** The builder in use: nativeBuilder, or null for the JavaScript one (useNativeLine). */
let nativeLine: NativeLineBuilder | null | undefined
/** Lines the native builder declined (the JavaScript one wrote them). */
let nativeDeclined = 0

/** Tests and benchmarks: build lines in C (true, when the addon has it) or in JavaScript (false). Returns whether C is used. */
export function useNativeLine (on: boolean): boolean {
  if (nativeBuilder === undefined) nativeBuilder = NativeLineBuilder.setUp(accessLog.prefix, accessLog.bindings, nums)
  nativeLine = on ? nativeBuilder : null
  return nativeLine !== null
}

/** Lines the native builder declined so far on this thread (tests: it declines only what it cannot write). */
export function nativeLineDeclines (): number {
  return nativeDeclined
}

const N_TIME_MS = 0
const N_PATH_START = 1
const N_PATH_END = 2
const N_STATUS = 3
const N_HAS_UPSTREAM = 4
const N_BYTES_OUT = 5
const N_BYTES_IN = 6
const N_DURATION_MS = 7
const N_UPSTREAM_MS = 8
const N_HOST_START = 9
const N_UA_START = 11
const N_REFERER_START = 13
const N_VERSION_MINOR = 15
const N_RETRIES = 16
const N_PROTO = 17
const N_METHOD_START = 18
const N_ADDRESS = 20
const N_FLAG = 21
const N_ROUTE = 22
const N_POOL = 23

/** Where the logged path ends in p.buf: the target's end, or its '?' with log.redactQuery. */
function loggedPathEnd (p: HeadParser): number {
  const start = p.base + p.targetStart
  const end = p.base + p.targetEnd
  if (!accessLog.redactQuery) return end
  const buf = p.buf
  for (let i = start; i < end; i++) if (buf[i] === 0x3f) return i // the target only, not the rest of the head
  return end
}

/** src[start, end) into nums[at], nums[at + 1] (-1 for an absent one); its length. */
function span (at: number, start: number, end: number): number {
  nums[at] = start
  nums[at + 1] = end
  return start === -1 ? 0 : end - start
}

/** Header field `i`'s value as a span (i = -1: absent). */
function fieldSpan (p: HeadParser, i: number, at: number): number {
  return i === -1 ? span(at, -1, -1) : span(at, p.valueStart(i), p.valueEnd(i))
}

/**
 * What of the request head the line shows, as spans of p.buf in `nums` (both
 * builders write from them; JavaScript writes the record's method, C the
 * head's, which is the same string): the method, the path, the host, the
 * user agent, the referer, and the version. Returns their bytes but the method's.
 */
function headSpans (p: HeadParser): number {
  let bytes = 0
  if (p.targetEnd > 0) {
    const methodEnd = p.base + p.targetStart - 1 // the request line's first SP
    span(N_METHOD_START, methodEnd - p.method.length, methodEnd)
    bytes += span(N_PATH_START, p.base + p.targetStart, loggedPathEnd(p))
    nums[N_VERSION_MINOR] = p.versionMinor
  } else {
    span(N_METHOD_START, -1, -1)
    bytes += span(N_PATH_START, -1, -1)
    nums[N_VERSION_MINOR] = -1
  }
  if (p.headLength === 0) { // header fields are only read from a complete head
    return bytes + span(N_HOST_START, -1, -1) + span(N_UA_START, -1, -1) + span(N_REFERER_START, -1, -1)
  }
  // an absolute-form target's authority is the request's host (RFC 9112 §3.2.2)
  findLogged(p)
  bytes += p.authorityStart !== -1
    ? span(N_HOST_START, p.base + p.authorityStart, p.base + p.authorityEnd)
    : fieldSpan(p, hostAt, N_HOST_START)
  return bytes + fieldSpan(p, userAgentAt, N_UA_START) + fieldSpan(p, refererAt, N_REFERER_START)
}

/** `key` (ending in the opening quote), `text` inside the JSON string, the closing quote. */
function putTextField (out: Buffer, pos: number, key: Uint8Array, text: string): number {
  pos = putText(out, putRaw(out, pos, key), text)
  out[pos++] = 0x22
  return pos
}

/** "key": then nums[at]'s span of `src` as a JSON string, or null when absent. */
function putSpanField (out: Buffer, pos: number, key: Uint8Array, src: Buffer, at: number): number {
  pos = putRaw(out, pos, key)
  if (nums[at] === -1) return putRaw(out, pos, K_NULL)
  out[pos++] = 0x22
  pos = putBytes(out, pos, src, nums[at], nums[at + 1])
  out[pos++] = 0x22
  return pos
}

/**
 * One access-log line into the thread's log buffer: the same JSON pino would
 * write for `accessLogger.info(fields)` (level name, ISO time, pid, thread,
 * type), then the request's fields.
 */
export function logAccess (r: AccessRecord): void {
  if (!accessLog.on) return
  const p = r.parser
  const requestId = r.requestId ?? ''
  const route = r.route?.name ?? ''
  const pool = r.pool?.name ?? ''
  const address = r.entry !== null ? r.entry.address : ''
  const variable = headSpans(p) + r.method.length + r.clientIp.length + address.length + requestId.length + r.flag.length +
    route.length + pool.length
  const sink = accessLog.sink
  const reserved = FIXED_BYTES + 6 * variable
  if (!sink.reserve(reserved)) return
  const now = monotonicNow()
  nums[N_TIME_MS] = Math.floor(TIME_ORIGIN + now)
  nums[N_STATUS] = r.status
  nums[N_HAS_UPSTREAM] = r.entry !== null ? 1 : 0
  nums[N_BYTES_OUT] = r.bytesOut
  nums[N_BYTES_IN] = r.bytesIn
  nums[N_DURATION_MS] = now - r.startedAt
  nums[N_UPSTREAM_MS] = r.upstreamMs
  nums[N_RETRIES] = r.retries ?? -1
  nums[N_PROTO] = r.proto === undefined ? -1 : r.proto === 'https' ? 1 : 0
  if (nativeLine === undefined) useNativeLine(true)
  const native = nativeLine as NativeLineBuilder | null
  // C writes the head's method (headSpans): the record's is the same string, else JavaScript writes the line
  if (native !== null && r.method === p.method) {
    native.makeRoom()
    nums[N_ADDRESS] = r.entry !== null ? native.nameId(NAME_ADDRESS, address) : -1
    nums[N_FLAG] = native.nameId(NAME_FLAG, r.flag)
    nums[N_ROUTE] = route !== '' ? native.nameId(NAME_ROUTE, route) : -1
    nums[N_POOL] = pool !== '' ? native.nameId(NAME_POOL, pool) : -1
    const end = native.line(sink.buf, sink.len, sink.len + reserved, p.buf, r.clientIp, requestId)
    if (end >= 0) { sink.commit(end); return }
  }
  if (native !== null) nativeDeclined++
  sink.commit(writeLine(sink.buf, sink.len, p.buf, r.clientIp, r.method, address, requestId, r.flag, route, pool))
}

/** The JavaScript builder: the line from `nums` and the strings into out at `pos`; its end. */
function writeLine (out: Buffer, pos: number, src: Buffer, clientIp: string, method: string, address: string,
  requestId: string, flag: string, route: string, pool: string): number {
  pos = putRaw(out, pos, accessLog.prefix)
  pos = putTime(out, pos, nums[N_TIME_MS])
  pos = putRaw(out, pos, accessLog.bindings)

  pos = putRaw(out, pos, K_CLIENT)
  pos = putText(out, pos, clientIp)
  pos = putRaw(out, pos, K_METHOD)
  pos = putText(out, pos, method)
  pos = putRaw(out, pos, K_PATH)
  if (nums[N_PATH_START] !== -1) pos = putBytes(out, pos, src, nums[N_PATH_START], nums[N_PATH_END])
  pos = putRaw(out, pos, K_STATUS)
  pos = putInt(out, pos, nums[N_STATUS])
  pos = nums[N_HAS_UPSTREAM] !== 0 ? putTextField(out, pos, K_UPSTREAM, address) : putRaw(out, pos, K_UPSTREAM_NULL)
  pos = putRaw(out, pos, K_BYTES)
  pos = putInt(out, pos, nums[N_BYTES_OUT])
  pos = putRaw(out, pos, K_BYTESIN)
  pos = putInt(out, pos, nums[N_BYTES_IN])
  pos = putRaw(out, pos, K_DURATIONMS)
  pos = putMillis(out, pos, nums[N_DURATION_MS])
  pos = putRaw(out, pos, K_UPSTREAMMS)
  pos = nums[N_UPSTREAM_MS] >= 0 ? putMillis(out, pos, nums[N_UPSTREAM_MS]) : putRaw(out, pos, K_NULL)
  pos = putTextField(out, pos, K_FLAG, flag)
  pos = putSpanField(out, pos, K_HOST, src, N_HOST_START)
  pos = putSpanField(out, pos, K_USERAGENT, src, N_UA_START)
  pos = putSpanField(out, pos, K_REFERER, src, N_REFERER_START)
  if (nums[N_VERSION_MINOR] !== -1) {
    pos = putRaw(out, pos, K_HTTPVERSION)
    pos = putInt(out, pos, nums[N_VERSION_MINOR])
    out[pos++] = 0x22
  } else {
    pos = putRaw(out, pos, K_HTTPVERSION_NULL)
  }
  if (requestId !== '') pos = putTextField(out, pos, K_REQUESTID, requestId)
  if (nums[N_RETRIES] !== -1) {
    pos = putRaw(out, pos, K_RETRIES)
    pos = putInt(out, pos, nums[N_RETRIES])
  }
  if (route !== '') pos = putTextField(out, pos, K_ROUTE, route)
  if (pool !== '') pos = putTextField(out, pos, K_POOL, pool)
  if (nums[N_PROTO] !== -1) pos = putRaw(out, pos, nums[N_PROTO] > 0 ? K_TLS_TRUE : K_TLS_FALSE)
  out[pos++] = 0x7d // }
  out[pos++] = 0x0a
  return pos
}

export function logRejected (r: AccessRecord, code: ErrorCode, detail: string): void {
  logger.warn({ client: r.clientIp, method: r.method || undefined, path: r.target || undefined, code, detail }, 'rejected request')
}

export function logUpstreamProblem (r: AccessRecord, entry: UpstreamEntry, code: ErrorCode, detail: string): void {
  logger.warn({ upstream: entry.address, method: r.method, path: r.target, code, detail }, 'upstream request failed')
}

export function logEjection (entry: UpstreamEntry, detail: string): void {
  logger.warn({ upstream: entry.address, reason: detail }, 'upstream ejected (passive health)')
}
