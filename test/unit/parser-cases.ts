/**
 * Shared material for the parser tests: feeding helpers that run one message
 * whole, byte by byte and split at chosen positions (undici's split tests),
 * the fast-check generators of valid requests and responses, and the tables
 * of valid and rejected heads used by head-parser.test.ts.
 *
 * Every piece handed to a parser is copied into a fresh buffer with guard
 * bytes on both sides, so a parser that reads outside [start, end) or keeps
 * a view of a chunk it no longer owns gives a different answer and fails.
 */
import fc from 'fast-check'
import {
  HeadParser, HEAD_ERROR, HEAD_INCOMPLETE, KIND_REQUEST, KIND_RESPONSE,
  BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE, type HeadLimits, type BodyKind,
} from '../../src/http/head-parser'
import { ChunkedScanner, CHUNKED_ERROR, CHUNKED_MORE } from '../../src/http/chunked'
import type { ErrorCode } from '../../src/errors'

export { KIND_REQUEST, KIND_RESPONSE, BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE }

/** The config defaults (src/config/schema.ts). */
export const DEFAULT_LIMITS: HeadLimits = Object.freeze({ maxHeaderBytes: 16_384, maxHeaderCount: 100, maxRequestTargetBytes: 8192 })
export const DEFAULT_TRAILER_BYTES = 16_384

const GUARD = 3
const GUARD_BYTE = 0xa5

export function bytes (s: string): Buffer { return Buffer.from(s, 'latin1') }
export function show (b: Uint8Array): string { return JSON.stringify(Buffer.from(b).toString('latin1')) }

/** b[from, to) in a new buffer with guard bytes around it; returns [buffer, start, end]. */
function piece (b: Uint8Array, from: number, to: number): [Buffer, number, number] {
  const out = Buffer.alloc(to - from + 2 * GUARD, GUARD_BYTE)
  out.set(b.subarray(from, to), GUARD)
  return [out, GUARD, GUARD + to - from]
}

/** Everything a caller can read from a parser after a head, as plain data. */
export interface HeadSnapshot {
  outcome: 'complete' | 'incomplete' | 'error'
  /** Index in the whole message just past the head (complete only). */
  end: number
  error: string | null
  errorDetail: string
  method?: string
  target?: string
  versionMinor?: number
  status?: number
  headers?: Array<[string, string]>
  skipped?: number[]
  contentLength?: number
  bodyKind?: BodyKind
  keepAlive?: boolean
  expectContinue?: boolean
  connectionClose?: boolean
  connectionKeepAlive?: boolean
  connectionUpgrade?: boolean
  connectionTokens?: string[]
  hasUpgrade?: boolean
  hostCount?: number
  headLength?: number
  requestLine?: string
}

export function snapshot (p: HeadParser, outcome: HeadSnapshot['outcome'], end: number): HeadSnapshot {
  if (outcome !== 'complete') return { outcome, end: -1, error: p.error, errorDetail: p.errorDetail }
  const headers: Array<[string, string]> = []
  const skipped: number[] = []
  for (let i = 0; i < p.headerCount; i++) {
    headers.push([p.fieldName(i), p.fieldValue(i)])
    if (p.fieldSkip[i] === 1) skipped.push(i)
  }
  const connectionTokens: string[] = []
  for (let k = 0; k < p.connectionTokenCount; k++) {
    connectionTokens.push(p.buf.latin1Slice(p.base + p.connectionTokens[k * 2], p.base + p.connectionTokens[k * 2 + 1]))
  }
  return {
    outcome,
    end,
    error: p.error,
    errorDetail: p.errorDetail,
    method: p.method,
    target: p.kind === KIND_REQUEST ? p.target() : '',
    versionMinor: p.versionMinor,
    status: p.status,
    headers,
    skipped,
    contentLength: p.contentLength,
    bodyKind: p.bodyKind,
    keepAlive: p.keepAlive,
    expectContinue: p.expectContinue,
    connectionClose: p.connectionClose,
    connectionKeepAlive: p.connectionKeepAlive,
    connectionUpgrade: p.connectionUpgrade,
    connectionTokens,
    hasUpgrade: p.hasUpgrade,
    hostCount: p.hostCount,
    headLength: p.headLength,
    // the bytes serialize.ts copies as the start line
    requestLine: p.buf.latin1Slice(p.base, p.base + p.fieldsStart),
  }
}

/** Positions where the message is cut: sorted, unique, inside (0, length). */
export type Cuts = readonly number[]

export interface FeedOptions {
  limits?: HeadLimits
  /** Response to a HEAD request. */
  noBodyExpected?: boolean
  /** Reuse this parser (reset first) instead of a new one: catches state that reset() forgets. */
  parser?: HeadParser
  chunked?: ChunkedScanner
  maxTrailerBytes?: number
}

export interface MessageSnapshot {
  head: HeadSnapshot
  /** Body outcome: 'none' (no body), 'done', 'more' (needs bytes), 'close' (read to EOF), 'error'. */
  body: 'none' | 'done' | 'more' | 'close' | 'error'
  /** Index just past the body (done/none), or -1. */
  bodyEnd: number
  bodyError: string
  dataBytes: number
}

/**
 * Feed a message cut at `cuts` through a head parser and then a body scanner,
 * as a connection would. Body bytes after the head in the same piece go to the
 * body scanner at the returned index.
 */
export function feedMessage (kind: number, msg: Uint8Array, cuts: Cuts, opts: FeedOptions = {}): MessageSnapshot {
  const p = opts.parser ?? new HeadParser(kind, opts.limits ?? DEFAULT_LIMITS)
  p.reset()
  if (opts.noBodyExpected === true) p.noBodyExpected = true
  const c = opts.chunked ?? new ChunkedScanner(opts.maxTrailerBytes ?? DEFAULT_TRAILER_BYTES)
  c.reset()
  let head: HeadSnapshot | null = null
  let remaining = 0
  let from = 0
  const bounds = [...cuts, msg.length]
  for (const to of bounds) {
    const [buf, start, end] = piece(msg, from, to)
    let s = start
    if (head === null) {
      const r = p.execute(buf, start, end)
      if (r === HEAD_ERROR) return { head: snapshot(p, 'error', -1), body: 'error', bodyEnd: -1, bodyError: '', dataBytes: 0 }
      if (r === HEAD_INCOMPLETE) { from = to; continue }
      if (r < start || r > end) throw new Error(`execute returned ${r} outside [${start}, ${end}]`)
      head = snapshot(p, 'complete', from + (r - start))
      if (p.bodyKind === BODY_NONE) return { head, body: 'none', bodyEnd: head.end, bodyError: '', dataBytes: 0 }
      remaining = p.contentLength
      s = r
    }
    if (p.bodyKind === BODY_LENGTH) {
      const n = Math.min(remaining, end - s)
      remaining -= n
      if (remaining === 0) return { head, body: 'done', bodyEnd: from + (s + n - start), bodyError: '', dataBytes: p.contentLength }
    } else if (p.bodyKind === BODY_CHUNKED) {
      const e = s < end ? c.execute(buf, s, end) : CHUNKED_MORE
      if (e === CHUNKED_ERROR) return { head, body: 'error', bodyEnd: -1, bodyError: c.error, dataBytes: c.dataBytes }
      if (e !== CHUNKED_MORE) {
        if (e < s || e > end) throw new Error(`chunked execute returned ${e} outside [${s}, ${end}]`)
        return { head, body: 'done', bodyEnd: from + (e - start), bodyError: '', dataBytes: c.dataBytes }
      }
    }
    from = to
  }
  if (head === null) return { head: snapshot(p, 'incomplete', -1), body: 'more', bodyEnd: -1, bodyError: '', dataBytes: 0 }
  if (p.bodyKind === BODY_CLOSE) return { head, body: 'close', bodyEnd: msg.length, bodyError: '', dataBytes: msg.length - head.end }
  return { head, body: 'more', bodyEnd: -1, bodyError: '', dataBytes: p.bodyKind === BODY_CHUNKED ? c.dataBytes : p.contentLength - remaining }
}

export function wholeCuts (): Cuts { return [] }
export function byteCuts (n: number): Cuts { return Array.from({ length: Math.max(0, n - 1) }, (_, i) => i + 1) }

/** Every single cut position, or a bounded sample of them for long messages (always near the ends and `extra`). */
export function singleCuts (n: number, max = 400, extra: readonly number[] = []): Cuts[] {
  const set = new Set<number>()
  if (n - 1 <= max) for (let i = 1; i < n; i++) set.add(i)
  else {
    const stride = Math.ceil((n - 1) / max)
    for (let i = 1; i < n; i += stride) set.add(i)
    for (let i = 1; i < 8; i++) { set.add(i); set.add(n - i) }
    for (const x of extra) for (let d = -3; d <= 3; d++) set.add(x + d)
  }
  return [...set].filter((i) => i > 0 && i < n).sort((a, b) => a - b).map((i) => [i])
}

/**
 * Run a message whole, byte by byte and split in two at
 * every position (a bounded sample of positions for long messages); every
 * way must give exactly the same snapshot. Returns it.
 */
export function sameAllWays (kind: number, msg: Uint8Array, opts: FeedOptions & { maxSplits?: number, extraCuts?: number[] } = {}): MessageSnapshot {
  const whole = feedMessage(kind, msg, wholeCuts(), opts)
  const ways: Array<[string, Cuts]> = []
  ways.push(['byte by byte', byteCuts(msg.length)])
  for (const cuts of singleCuts(msg.length, opts.maxSplits, opts.extraCuts)) ways.push([`split at ${cuts[0]}`, cuts])
  for (const [name, cuts] of ways) {
    const got = feedMessage(kind, msg, cuts, opts)
    if (!deepEqual(got, whole)) {
      throw new Error(`${name} differs from whole for ${msg.length > 300 ? `${msg.length} bytes` : show(msg)}\n whole: ${JSON.stringify(whole)}\n ${name}: ${JSON.stringify(got)}`)
    }
  }
  return whole
}

export function deepEqual (a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

// ---------------------------------------------------------------------------
// Chunked bodies on their own

export interface ChunkedSnapshot { outcome: 'done' | 'more' | 'error', end: number, error: string, dataBytes: number }

export function feedChunked (body: Uint8Array, cuts: Cuts, maxTrailerBytes = DEFAULT_TRAILER_BYTES, scanner?: ChunkedScanner): ChunkedSnapshot {
  const c = scanner ?? new ChunkedScanner(maxTrailerBytes)
  c.reset()
  let from = 0
  for (const to of [...cuts, body.length]) {
    const [buf, start, end] = piece(body, from, to)
    const e = c.execute(buf, start, end)
    if (e === CHUNKED_ERROR) return { outcome: 'error', end: -1, error: c.error, dataBytes: c.dataBytes }
    if (e !== CHUNKED_MORE) return { outcome: 'done', end: from + (e - start), error: '', dataBytes: c.dataBytes }
    from = to
  }
  return { outcome: 'more', end: -1, error: '', dataBytes: c.dataBytes }
}

export function chunkedSameAllWays (body: Uint8Array, maxTrailerBytes = DEFAULT_TRAILER_BYTES): ChunkedSnapshot {
  const whole = feedChunked(body, wholeCuts(), maxTrailerBytes)
  const ways: Array<[string, Cuts]> = [['byte by byte', byteCuts(body.length)]]
  for (const cuts of singleCuts(body.length)) ways.push([`split at ${cuts[0]}`, cuts])
  for (const [name, cuts] of ways) {
    const got = feedChunked(body, cuts, maxTrailerBytes)
    if (!deepEqual(got, whole)) throw new Error(`${name} differs from whole for ${show(body)}\n whole: ${JSON.stringify(whole)}\n ${name}: ${JSON.stringify(got)}`)
  }
  return whole
}

// ---------------------------------------------------------------------------
// Generators of valid messages (fast-check), with the result they must parse to

export const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
/** Names the parser gives meaning to, generated on purpose rather than at random. */
const SPECIAL_NAMES = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'expect', 'upgrade', 'keep-alive', 'proxy-connection', 'te', 'trailer'])

/** Methods llhttp knows (Node's http.METHODS) minus CONNECT, which a reverse proxy refuses. */
export const LLHTTP_METHODS: readonly string[] = [
  'ACL', 'BIND', 'CHECKOUT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH', 'MERGE', 'MKACTIVITY',
  'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH', 'PURGE', 'PUT',
  'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK', 'UNLOCK', 'UNSUBSCRIBE',
]

export const token = (min = 1, max = 16): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...TCHARS), minLength: min, maxLength: max })
export const fieldName = (): fc.Arbitrary<string> => token(1, 20).filter((n) => !SPECIAL_NAMES.has(n.toLowerCase()))

/** A field-value byte: VCHAR, SP, HTAB or obs-text (RFC 9110 §5.5). */
const valueByte = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) },
  { weight: 1, arbitrary: fc.constantFrom(0x20, 0x09) },
  { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }) }
)
const ows = fc.constantFrom('', ' ', '\t', '  ', ' \t ')

/** A raw field value with optional OWS around it; the second element is what the parser must return. */
export const fieldValue = (maxLength = 40): fc.Arbitrary<[string, string]> =>
  fc.tuple(ows, fc.array(valueByte, { maxLength }), ows).map(([a, v, b]) => {
    const s = String.fromCharCode(...v)
    return [a + s + b, s.replace(/^[ \t]+|[ \t]+$/g, '')]
  })

const PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%/"
const pathArb = fc.string({ unit: fc.constantFrom(...PATH_CHARS), maxLength: 30 })
const queryArb = fc.option(fc.string({ unit: fc.constantFrom(...PATH_CHARS, '?'), maxLength: 30 }), { nil: undefined })
const HOST_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789-.'
const hostArb = fc.tuple(fc.string({ unit: fc.constantFrom(...HOST_CHARS), minLength: 1, maxLength: 20 }), fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
  .map(([h, port]) => port === undefined ? h : `${h}:${port}`)

export const targetArb = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(pathArb, queryArb).map(([p, q]) => '/' + p + (q === undefined ? '' : '?' + q)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('http', 'https', 'HTTP'), hostArb, pathArb).map(([s, h, p]) => `${s}://${h}/${p}`) }
)

/** chunk-ext per RFC 9112 §7.1.1; `bws` adds the optional whitespace that llhttp refuses. */
export const chunkExtArb = (bws: boolean): fc.Arbitrary<string> => {
  const quoted = fc.array(fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...'abc ,;=\t!#xyz'.split('')) },
    { weight: 1, arbitrary: fc.constantFrom('\\"', '\\\\', '\\a', '\x80', '\xfe') }
  ), { maxLength: 10 }).map((parts) => '"' + parts.join('') + '"')
  const value = fc.option(fc.oneof(token(1, 8), quoted), { nil: undefined })
  const ws = bws ? fc.constantFrom('', '', ' ', '\t') : fc.constant('')
  const one = fc.tuple(ws, ws, token(1, 8), value, ws, ws).map(([a, b, n, v, c, d]) => a + ';' + b + n + (v === undefined ? '' : c + '=' + d + v))
  return fc.array(one, { maxLength: 3 }).map((xs) => xs.join(''))
}

export interface ChunkedBodyModel { text: string, dataBytes: number }
/** A complete chunked body: random chunk sizes (hex in either case, optional leading zeros), extensions, trailers. */
export const chunkedBodyArb = (bws: boolean): fc.Arbitrary<ChunkedBodyModel> => fc.tuple(
  fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 80 }), fc.boolean(), fc.constantFrom('', '', '0', '00', '0000000000000000'), chunkExtArb(bws)), { maxLength: 6 }),
  chunkExtArb(bws),
  fc.array(fc.tuple(fieldName(), fieldValue(20)), { maxLength: 3 })
).map(([chunks, lastExt, trailers]) => {
  let text = ''
  let dataBytes = 0
  for (const [data, upper, zeros, ext] of chunks) {
    const hex = data.length.toString(16)
    text += zeros + (upper ? hex.toUpperCase() : hex) + ext + '\r\n' + Buffer.from(data).toString('latin1') + '\r\n'
    dataBytes += data.length
  }
  text += '0' + lastExt + '\r\n'
  for (const [name, [raw]] of trailers) text += `${name}:${raw}\r\n`
  return { text: text + '\r\n', dataBytes }
})

export type BodyModel =
  | { kind: 'none' }
  | { kind: 'length', data: Uint8Array, zeros: string, duplicate: boolean }
  | { kind: 'chunked', body: ChunkedBodyModel, codings: string }

export interface RequestModel {
  text: string
  method: string
  target: string
  versionMinor: number
  /** every field in order: [name, value as the parser must return it] */
  headers: Array<[string, string]>
  bodyKind: BodyKind
  contentLength: number
  keepAlive: boolean
  expectContinue: boolean
  /** Index just past the head and just past the whole message. */
  headEnd: number
  end: number
  dataBytes: number
}

export interface RequestGenOptions {
  /** Stay inside what Node's llhttp accepts (the differential test's valid set). */
  llhttp: boolean
}

/** Random valid requests and what they must parse to. */
export function requestArb (opts: RequestGenOptions): fc.Arbitrary<RequestModel> {
  const methods = opts.llhttp
    ? fc.constantFrom(...LLHTTP_METHODS)
    : fc.oneof(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE'), token(1, 12).filter((m) => m !== 'CONNECT'))
  const body: fc.Arbitrary<BodyModel> = fc.oneof(
    { weight: 2, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('length' as const), data: fc.uint8Array({ maxLength: 200 }), zeros: fc.constantFrom('', '', '0', '000', '00000000000000000000'), duplicate: opts.llhttp ? fc.constant(false) : fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('chunked' as const), body: chunkedBodyArb(!opts.llhttp), codings: opts.llhttp ? fc.constantFrom('chunked', 'CHUNKED', 'chunked ') : fc.constantFrom('chunked', 'Chunked', ',chunked', 'chunked ,', ',,CHUNKED,') }) }
  )
  return fc.record({
    method: methods,
    target: targetArb,
    versionMinor: fc.constantFrom(0, 1, 1, 1),
    leadingEmptyLines: fc.constantFrom(0, 0, 0, 1, 2),
    extra: fc.array(fc.tuple(fieldName(), fieldValue()), { maxLength: 30 }),
    host: fc.tuple(fc.constantFrom('Host', 'host', 'HOST'), hostArb, ows),
    hostAt: fc.nat(),
    hostIn10: fc.boolean(),
    connection: fc.constantFrom(undefined, undefined, 'close', 'keep-alive', 'Keep-Alive', 'x-hop, keep-alive'),
    expect: fc.boolean(),
    body,
  }).map((g) => {
    let method = g.method
    let target = g.target
    if (method === 'OPTIONS' && target === '/') target = '*'
    if (!opts.llhttp && method === 'CONNECT') method = 'GET'
    const minor = g.body.kind === 'chunked' ? 1 : g.versionMinor // RFC 9112 §6.1: no TE in HTTP/1.0
    const lines: Array<[string, string, string]> = g.extra.map(([n, [raw, val]]) => [n, raw, val])
    if (minor === 1 || g.hostIn10) {
      const [hn, hv, w] = g.host
      lines.splice(g.hostAt % (lines.length + 1), 0, [hn, w + hv + w, hv])
    }
    if (g.connection !== undefined) lines.push(['Connection', ' ' + g.connection, g.connection])
    const expect = g.expect && minor === 1
    if (expect) lines.push(['Expect', ' 100-continue', '100-continue'])
    let bodyText = ''
    let bodyKind: BodyKind = BODY_NONE
    let contentLength = -1
    let dataBytes = 0
    if (g.body.kind === 'length') {
      const n = g.body.data.length
      const v = g.body.zeros + String(n)
      lines.push(['Content-Length', ' ' + v, v])
      if (g.body.duplicate) lines.push(['content-length', v, v])
      bodyText = Buffer.from(g.body.data).toString('latin1')
      contentLength = n
      bodyKind = n > 0 ? BODY_LENGTH : BODY_NONE
      dataBytes = n
    } else if (g.body.kind === 'chunked') {
      lines.push(['Transfer-Encoding', ' ' + g.body.codings, g.body.codings.trim()])
      bodyText = g.body.body.text
      bodyKind = BODY_CHUNKED
      dataBytes = g.body.body.dataBytes
    }
    const close = g.connection === 'close'
    const ka = g.connection !== undefined && g.connection.toLowerCase().includes('keep-alive')
    let head = '\r\n'.repeat(g.leadingEmptyLines) + `${method} ${target} HTTP/1.${minor}\r\n`
    for (const [n, raw] of lines) head += `${n}:${raw}\r\n`
    head += '\r\n'
    return {
      text: head + bodyText,
      method,
      target,
      versionMinor: minor,
      headers: lines.map(([n, , v]) => [n, v] as [string, string]),
      bodyKind,
      contentLength,
      keepAlive: minor === 1 ? !close : ka && !close,
      expectContinue: expect,
      headEnd: head.length,
      end: head.length + bodyText.length,
      dataBytes,
    }
  })
}

export interface ResponseModel {
  text: string
  status: number
  versionMinor: number
  noBodyExpected: boolean
  headers: Array<[string, string]>
  bodyKind: BodyKind
  contentLength: number
  keepAlive: boolean
  headEnd: number
  /** Index just past the message; for BODY_CLOSE the whole text (read to EOF). */
  end: number
  dataBytes: number
}

const reasonArb = fc.oneof(
  fc.constantFrom('', ' OK', ' Not Modified', ' ', ' No Content'),
  fc.array(valueByte, { maxLength: 20 }).map((v) => ' ' + String.fromCharCode(...v))
)

/** Random valid responses (1xx, 204, 304, HEAD, Content-Length, chunked, close-delimited; HTTP/1.0 and 1.1). */
export function responseArb (): fc.Arbitrary<ResponseModel> {
  return fc.record({
    status: fc.oneof(fc.constantFrom(100, 101, 103, 200, 204, 206, 301, 304, 404, 500, 503), fc.integer({ min: 100, max: 599 })),
    versionMinor: fc.constantFrom(0, 1, 1),
    reason: reasonArb,
    noBodyExpected: fc.boolean(),
    extra: fc.array(fc.tuple(fieldName(), fieldValue()), { maxLength: 30 }),
    connection: fc.constantFrom(undefined, undefined, 'close', 'keep-alive'),
    framing: fc.constantFrom('length', 'length', 'chunked', 'close'),
    data: fc.uint8Array({ maxLength: 200 }),
    chunked: chunkedBodyArb(true),
  }).map((g) => {
    const minor = g.framing === 'chunked' ? 1 : g.versionMinor // RFC 9112 §6.1: no TE in HTTP/1.0
    const lines: Array<[string, string, string]> = g.extra.map(([n, [raw, val]]) => [n, raw, val])
    if (g.connection !== undefined) lines.push(['Connection', ' ' + g.connection, g.connection])
    const noBody = g.noBodyExpected || g.status < 200 || g.status === 204 || g.status === 304
    let bodyKind: BodyKind
    let contentLength = -1
    let bodyText = ''
    let dataBytes = 0
    if (g.framing === 'length') {
      lines.push(['Content-Length', ' ' + g.data.length, String(g.data.length)])
      contentLength = g.data.length
      bodyKind = g.data.length > 0 ? BODY_LENGTH : BODY_NONE
      bodyText = Buffer.from(g.data).toString('latin1')
      dataBytes = g.data.length
    } else if (g.framing === 'chunked') {
      lines.push(['Transfer-Encoding', ' chunked', 'chunked'])
      bodyKind = BODY_CHUNKED
      bodyText = g.chunked.text
      dataBytes = g.chunked.dataBytes
    } else {
      bodyKind = BODY_CLOSE
      bodyText = Buffer.from(g.data).toString('latin1')
      dataBytes = g.data.length
    }
    if (noBody) { bodyKind = BODY_NONE; bodyText = ''; dataBytes = 0 }
    let head = `HTTP/1.${minor} ${g.status}${g.reason}\r\n`
    for (const [n, raw] of lines) head += `${n}:${raw}\r\n`
    head += '\r\n'
    const persistent = minor === 1 ? g.connection !== 'close' : g.connection === 'keep-alive'
    return {
      text: head + bodyText,
      status: g.status,
      versionMinor: minor,
      noBodyExpected: g.noBodyExpected,
      headers: lines.map(([n, , v]) => [n, v] as [string, string]),
      bodyKind,
      contentLength,
      keepAlive: bodyKind !== BODY_CLOSE && persistent,
      headEnd: head.length,
      end: head.length + bodyText.length,
      dataBytes,
    }
  })
}

/**
 * Random partitions of n bytes: a few random cut sets, always including one
 * that cuts into 1-byte pieces.
 */
/** A uniform-ish fraction in [0, 1) (fc.double piles up near 0, which would cut every message at its first bytes). */
export const fractionArb = fc.integer({ min: 0, max: 999_999 }).map((i) => i / 1_000_000)
export const partitionsArb = fc.array(fc.array(fractionArb, { minLength: 1, maxLength: 8 }), { minLength: 2, maxLength: 4 })

export function cutsFrom (fractions: readonly number[], n: number): Cuts {
  const set = new Set<number>()
  for (const f of fractions) { const i = Math.floor(f * n); if (i > 0 && i < n) set.add(i) }
  return [...set].sort((a, b) => a - b)
}

// ---------------------------------------------------------------------------
// Tables for head-parser.test.ts

const H = 'Host: example.com\r\n'

export interface RejectCase {
  name: string
  text: string
  code: ErrorCode
  /** The HTTP status a client sees (src/errors.ts). */
  status: number
  kind?: number
  limits?: HeadLimits
}

/** Request heads that must be refused, with the code and status the client gets. */
export const REQUEST_REJECTS: RejectCase[] = [
  // framing (RFC 9112 §6)
  { name: 'Content-Length and Transfer-Encoding', text: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`, code: 'SWY_ERR_CL_AND_TE', status: 400 },
  { name: 'Transfer-Encoding then Content-Length', text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n`, code: 'SWY_ERR_CL_AND_TE', status: 400 },
  { name: 'Content-Length 0 with chunked', text: `POST / HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n`, code: 'SWY_ERR_CL_AND_TE', status: 400 },
  { name: 'differing duplicate Content-Length', text: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\n`, code: 'SWY_ERR_BAD_CONTENT_LENGTH', status: 400 },
  { name: 'duplicate Content-Length 0 then 1', text: `POST / HTTP/1.1\r\n${H}Content-Length: 0\r\ncontent-length: 1\r\n\r\n`, code: 'SWY_ERR_BAD_CONTENT_LENGTH', status: 400 },
  ...['+5', '-5', '5 5', '1, 1', '1,1', '0x10', 'a', '5a', '1e3', '5.0', '"5"', '', ' ', '9999999999999999', '1234567890123456789', '5\x00', '5;'].map((v): RejectCase => (
    { name: `Content-Length ${JSON.stringify(v)}`, text: `POST / HTTP/1.1\r\n${H}Content-Length: ${v}\r\n\r\n`, code: v.includes('\x00') ? 'SWY_ERR_BAD_HEADER' : 'SWY_ERR_BAD_CONTENT_LENGTH', status: 400 })),
  // a coding other than chunked: 501 (the proxy decodes chunked only, RFC 9112 §6.1); bad grammar: 400
  ...['gzip', 'chunked, gzip', 'identity', 'xchunked', 'gzip, chunked', 'cow, chunked', 'gzip;level=9 , CHUNKED'].map((v): RejectCase => (
    { name: `Transfer-Encoding ${JSON.stringify(v)}`, text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: ${v}\r\n\r\n`, code: 'SWY_ERR_TE_NOT_IMPLEMENTED', status: 501 })),
  ...['chunked;q=1', 'chunked ;ext', 'chunked, chunked', ',', '', 'chun=ked, chunked', 'cow chunked, chunked', 'chunked\xe9'].map((v): RejectCase => (
    { name: `Transfer-Encoding ${JSON.stringify(v)}`, text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: ${v}\r\n\r\n`, code: 'SWY_ERR_BAD_TRANSFER_ENCODING', status: 400 })),
  { name: 'gzip then chunked in two fields', text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n`, code: 'SWY_ERR_TE_NOT_IMPLEMENTED', status: 501 },
  { name: 'chunked in two fields', text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`, code: 'SWY_ERR_BAD_TRANSFER_ENCODING', status: 400 },
  { name: 'chunked then gzip in two fields', text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n`, code: 'SWY_ERR_TE_NOT_IMPLEMENTED', status: 501 },
  { name: 'Transfer-Encoding in HTTP/1.0', text: 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', code: 'SWY_ERR_BAD_TRANSFER_ENCODING', status: 400 },
  // field syntax (RFC 9112 §5)
  { name: 'obs-fold (SP)', text: `GET / HTTP/1.1\r\n${H}X-A: one\r\n two\r\n\r\n`, code: 'SWY_ERR_OBS_FOLD', status: 400 },
  { name: 'obs-fold (HTAB)', text: `GET / HTTP/1.1\r\n${H}X-A: one\r\n\ttwo\r\n\r\n`, code: 'SWY_ERR_OBS_FOLD', status: 400 },
  { name: 'whitespace line before the first field', text: `GET / HTTP/1.1\r\n ${H}\r\n`, code: 'SWY_ERR_OBS_FOLD', status: 400 },
  { name: 'space before colon', text: `GET / HTTP/1.1\r\n${H}X-A : one\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  { name: 'tab before colon', text: `GET / HTTP/1.1\r\n${H}X-A\t: one\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  { name: 'Content-Length with space before colon', text: `POST / HTTP/1.1\r\n${H}Content-Length : 5\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  { name: 'field without colon', text: `GET / HTTP/1.1\r\n${H}X-A\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  { name: 'empty field name', text: `GET / HTTP/1.1\r\n${H}: one\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  { name: 'non-token byte in name', text: `GET / HTTP/1.1\r\n${H}X(A): one\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  { name: 'obs-text in name', text: `GET / HTTP/1.1\r\n${H}X-\xe9: one\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  { name: 'invalid Connection syntax', text: `GET / HTTP/1.1\r\n${H}Connection: close x\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  // at most 16 fields named for removal (README); close, keep-alive and upgrade do not count
  { name: '17 Connection options over two lines', text: `GET / HTTP/1.1\r\n${H}Connection: close, ${Array.from({ length: 9 }, (_, i) => `x-${i}`).join(', ')}\r\nConnection: upgrade, ${Array.from({ length: 8 }, (_, i) => `y-${i}`).join(', ')}\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
  // line ends (RFC 9112 §2.2)
  { name: 'bare CR in request line', text: `GET /\r HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'bare CR in field name', text: `GET / HTTP/1.1\r\n${H}X\rA: one\r\n\r\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'bare CR in field value', text: `GET / HTTP/1.1\r\n${H}X-A: o\rne\r\n\r\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'CR CR LF', text: `GET / HTTP/1.1\r\n${H}X-A: one\r\r\n\r\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'bare LF ends the request line', text: `GET / HTTP/1.1\n${H}\r\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'bare LF ends a field', text: 'GET / HTTP/1.1\r\nHost: example.com\n\r\n', code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'bare LF ends the head', text: `GET / HTTP/1.1\r\n${H}\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'bare LF inside a value', text: `GET / HTTP/1.1\r\n${H}X-A: o\nne\r\n\r\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  { name: 'bare LF before the request line', text: `\nGET / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BARE_CR_LF', status: 400 },
  // control bytes (RFC 9110 §5.5, RFC 9112 §3)
  ...[0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f].flatMap((b): RejectCase[] => {
    const x = String.fromCharCode(b)
    const hex = b.toString(16).padStart(2, '0')
    return [
      { name: `0x${hex} in field value`, text: `GET / HTTP/1.1\r\n${H}X-A: a${x}b\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
      { name: `0x${hex} in field name`, text: `GET / HTTP/1.1\r\n${H}X-${x}A: b\r\n\r\n`, code: 'SWY_ERR_BAD_HEADER', status: 400 },
      { name: `0x${hex} in method`, text: `G${x}T / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_METHOD', status: 400 },
      { name: `0x${hex} in target`, text: `GET /a${x}b HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
      { name: `0x${hex} in version`, text: `GET / HTTP/1.${x}\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
    ]
  }),
  { name: 'HTAB in value is fine but in target is not', text: `GET /a\tb HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'obs-text in target', text: `GET /caf\xe9 HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'fragment in origin-form', text: `GET /a#b HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'fragment after an authority', text: `GET http://a#b/ HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  // request line (RFC 9112 §3)
  { name: 'non-token method', text: `G@T / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_METHOD', status: 400 },
  { name: 'method with parenthesis', text: `GET() / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_METHOD', status: 400 },
  { name: 'method too long', text: `${'A'.repeat(65)} / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_METHOD', status: 400 },
  { name: 'leading space', text: ` GET / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'two spaces after method', text: `GET  / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'two spaces before version', text: `GET /  HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'trailing space', text: `GET / HTTP/1.1 \r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'tab as separator', text: `GET\t/ HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_METHOD', status: 400 },
  { name: 'no version (HTTP/0.9 simple request)', text: 'GET /\r\n\r\n', code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'method only', text: 'GET\r\n\r\n', code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'lower-case http/1.1', text: `GET / http/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'HTTP/1.01', text: `GET / HTTP/1.01\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'HTTP/1', text: `GET / HTTP/1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'HTTP/2.0', text: `GET / HTTP/2.0\r\n${H}\r\n`, code: 'SWY_ERR_BAD_VERSION', status: 505 },
  { name: 'HTTP/1.2 without Host (taken as 1.1)', text: 'GET / HTTP/1.2\r\n\r\n', code: 'SWY_ERR_MISSING_HOST', status: 400 },
  { name: 'HTTP/1.x', text: `GET / HTTP/1.x\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'HTTP/0.9', text: `GET / HTTP/0.9\r\n${H}\r\n`, code: 'SWY_ERR_BAD_VERSION', status: 505 },
  { name: 'HTTP/3.0', text: `GET / HTTP/3.0\r\n${H}\r\n`, code: 'SWY_ERR_BAD_VERSION', status: 505 },
  { name: 'asterisk-form with GET', text: `GET * HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'asterisk-form with more', text: `OPTIONS *x HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'authority-form with GET', text: `GET example.com:80 HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'CONNECT', text: `CONNECT example.com:443 HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'relative target', text: `GET index.html HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'ftp absolute-form', text: `GET ftp://example.com/ HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'absolute-form scheme cut short', text: `GET http:/a HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'absolute-form "htp"', text: `GET htp://a/ HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'absolute-form with empty host', text: `GET http:///x HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'absolute-form with only a port', text: `GET http://:80/x HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'absolute-form that is only a scheme', text: `GET https:// HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  { name: 'absolute-form with userinfo', text: `GET http://user:pw@example.com/ HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  ...['"', '<', '>', '\\', '^', '`', '{', '|', '}'].map((c): RejectCase => (
    { name: `${c} in the authority`, text: `GET http://exa${c}mple.com/ HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 })),
  { name: 'CONNECT with origin-form', text: `CONNECT / HTTP/1.1\r\n${H}\r\n`, code: 'SWY_ERR_BAD_REQUEST_LINE', status: 400 },
  // Host (RFC 9112 §3.2)
  { name: 'HTTP/1.1 without Host', text: 'GET / HTTP/1.1\r\nX-A: b\r\n\r\n', code: 'SWY_ERR_MISSING_HOST', status: 400 },
  { name: 'two Host fields', text: `GET / HTTP/1.1\r\n${H}Host: other.example\r\n\r\n`, code: 'SWY_ERR_MISSING_HOST', status: 400 },
  { name: 'two identical Host fields', text: `GET / HTTP/1.1\r\n${H}${H}\r\n`, code: 'SWY_ERR_MISSING_HOST', status: 400 },
  { name: 'two Host fields in HTTP/1.0', text: `GET / HTTP/1.0\r\n${H}host: b\r\n\r\n`, code: 'SWY_ERR_MISSING_HOST', status: 400 },
  { name: 'Host with space inside', text: 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', code: 'SWY_ERR_MISSING_HOST', status: 400 },
  { name: 'Host with userinfo', text: 'GET / HTTP/1.1\r\nHost: user@a\r\n\r\n', code: 'SWY_ERR_MISSING_HOST', status: 400 },
  { name: 'Host with a path', text: 'GET / HTTP/1.1\r\nHost: a/b\r\n\r\n', code: 'SWY_ERR_MISSING_HOST', status: 400 },
]

// ---------------------------------------------------------------------------
// Mutations of valid messages (differential and split-consistency tests)

/** Bytes that matter to a parser, inserted and replaced more often than random ones. */
export const SPECIAL_BYTES = [0x0d, 0x0a, 0x20, 0x09, 0x00, 0x7f, 0x80, 0x3a, 0x3b, 0x2c, 0x22, 0x30]

export type Mutation =
  | { op: 'insert' | 'replace', where: number, inHead: boolean, byte: number }
  | { op: 'delete' | 'toggleCase' | 'obsFold' | 'crlfToLf' | 'truncate', where: number, inHead: boolean }
  | { op: 'dupLine', where: number, which: number }
  | { op: 'addField', where: number, field: string }

export const EXTRA_FIELDS = [
  'Content-Length: 0', 'Content-Length: 5', 'Content-Length: 1, 1', 'content-length: 00', 'Transfer-Encoding: chunked',
  'Transfer-Encoding: gzip', 'transfer-encoding: chunked, chunked', 'Host: other.example', 'Host:', 'Connection: close',
  'Expect: 100-continue', 'Expect: nothing', 'Transfer-Encoding: chunked,',
]

const byteArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...SPECIAL_BYTES) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) })
const whereArb = fractionArb
const inHeadArb = fc.constantFrom(true, true, true, false)

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constantFrom('insert' as const, 'replace' as const), where: whereArb, inHead: inHeadArb, byte: byteArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('delete' as const, 'toggleCase' as const, 'obsFold' as const, 'crlfToLf' as const, 'truncate' as const), where: whereArb, inHead: inHeadArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('dupLine' as const), where: whereArb, which: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('addField' as const), where: whereArb, field: fc.constantFrom(...EXTRA_FIELDS) }) }
)

export const mutationsArb = fc.array(mutationArb, { minLength: 1, maxLength: 3 })

/** Apply mutations in order to a latin1 message whose head ends at `headEnd`. */
export function mutate (text: string, headEnd: number, mutations: readonly Mutation[]): string {
  let s = text
  let he = headEnd
  const at = (where: number, inHead: boolean): number => Math.floor(where * (inHead ? Math.max(1, he) : Math.max(1, s.length)))
  // field lines of the current head: [start, end) including CRLF
  const fieldLines = (): Array<[number, number]> => {
    const out: Array<[number, number]> = []
    let i = s.indexOf('\r\n') + 2
    while (i > 1 && i < he - 2) {
      const e = s.indexOf('\r\n', i)
      if (e < 0 || e >= he) break
      out.push([i, e + 2])
      i = e + 2
    }
    return out
  }
  for (const m of mutations) {
    switch (m.op) {
      case 'insert': { const i = at(m.where, m.inHead); s = s.slice(0, i) + String.fromCharCode(m.byte) + s.slice(i); if (i < he) he++; break }
      case 'replace': { const i = Math.min(at(m.where, m.inHead), s.length - 1); s = s.slice(0, i) + String.fromCharCode(m.byte) + s.slice(i + 1); break }
      case 'delete': { const i = Math.min(at(m.where, m.inHead), s.length - 1); s = s.slice(0, i) + s.slice(i + 1); if (i < he) he--; break }
      case 'truncate': { s = s.slice(0, Math.max(1, at(m.where, m.inHead))); he = Math.min(he, s.length); break }
      case 'toggleCase': {
        const from = at(m.where, m.inHead)
        const i = s.slice(from).search(/[A-Za-z]/)
        if (i >= 0) { const j = from + i; const c = s[j]; s = s.slice(0, j) + (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) + s.slice(j + 1) }
        break
      }
      case 'crlfToLf': {
        const i = s.indexOf('\r\n', at(m.where, m.inHead))
        const j = i >= 0 ? i : s.indexOf('\r\n')
        if (j >= 0) { s = s.slice(0, j) + s.slice(j + 1); if (j < he) he-- }
        break
      }
      case 'obsFold': {
        // fold a field value: "X: a b" -> "X: a\r\n b", or indent a whole line
        const lines = fieldLines()
        if (lines.length === 0) break
        const [ls, le] = lines[Math.floor(m.where * lines.length)]
        const sp = s.indexOf(' ', ls)
        const i = sp > ls && sp < le - 2 ? sp : ls
        const fold = i === ls ? ' ' : '\r\n'
        s = s.slice(0, i) + fold + s.slice(i)
        he += fold.length
        break
      }
      case 'dupLine': {
        // prefer the framing fields, the ones smuggling is made of
        const lines = fieldLines()
        if (lines.length === 0) break
        const framing = lines.filter(([ls]) => /^(content-length|transfer-encoding|host)\s*:/i.test(s.slice(ls, ls + 20)))
        const pool = framing.length > 0 ? framing : lines
        const [ls, le] = pool[m.which % pool.length]
        const ins = lines[Math.floor(m.where * lines.length)][1]
        s = s.slice(0, ins) + s.slice(ls, le) + s.slice(ins)
        he += le - ls
        break
      }
      case 'addField': {
        const lines = fieldLines()
        const ins = lines.length === 0 ? s.indexOf('\r\n') + 2 : lines[Math.floor(m.where * lines.length)][0]
        if (ins < 2) break
        s = s.slice(0, ins) + m.field + '\r\n' + s.slice(ins)
        he += m.field.length + 2
        break
      }
    }
    if (s.length === 0) s = '\r'
  }
  return s
}
