/**
 * The access log's two line builders write the same bytes: the C one (native/access-line.c, used when
 * the addon is built) and the JavaScript one (src/proxy/access-log.ts, the fallback), on random
 * records: request heads whose target, Host, User-Agent and Referer carry every byte a field value may
 * (quotes, backslashes, tabs, obs-text: escaped), strings with controls, quotes and code units past
 * latin1, numbers at their edges (durations on a half microsecond), absent fields, absolute-form
 * targets, a head that never completed, the query redacted or not. Every line is also valid JSON
 * that reads back the record's fields.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { HEAD_INCOMPLETE, HeadParser, KIND_REQUEST } from '../../src/http/head-parser'
import { logAccess, nativeLineDeclines, useNativeLine, type AccessRecord } from '../../src/proxy/access-log'
import { accessLog } from '../../src/log'
import { LogSink } from '../../src/log-sink'
import type { UpstreamEntry } from '../../src/shared/state'
import { beginRead, endRead, monotonicNow } from '../../src/proxy/clock'
import { optionalHandoff } from '../../src/primary/handoff'

const LIMITS = { maxHeaderBytes: 16384, maxHeaderCount: 100, maxRequestTargetBytes: 8192 }

/** Bytes a field value may hold (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text; no leading or trailing space. */
const fieldByte = fc.oneof(fc.integer({ min: 0x21, max: 0x7e }), fc.constantFrom(0x09, 0x20, 0x22, 0x5c), fc.integer({ min: 0x80, max: 0xff }))
const fieldValue = fc.array(fieldByte, { minLength: 1, maxLength: 60 })
  .map((bytes) => Buffer.from(bytes))
  .filter((b) => b[0] !== 0x20 && b[0] !== 0x09 && b[b.length - 1] !== 0x20 && b[b.length - 1] !== 0x09)
/** Host is checked as an authority (RFC 3986 §3.2.2): a name or an address, maybe a port. */
const hostValue = fc.tuple(fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,20}$/), fc.option(fc.integer({ min: 1, max: 65535 })))
  .map(([name, port]) => Buffer.from(port === null ? name : `${name}:${port}`, 'latin1'))
const pathChar = fc.constantFrom(...'abcXYZ019-._~!$&\'()*+,;=:@/%?'.split(''))
const target = fc.array(pathChar, { maxLength: 40 }).map((cs) => '/' + cs.join('').replace(/%/g, '%25'))
/** Strings as the record's string fields may hold them, past latin1 too (written as their low byte). */
const text = fc.string({ unit: fc.oneof(fc.constantFrom('"', '\\', '\n', '\u0000', '\u007f', 'é', '\u20ac', 'a', '1', '.', ':'), fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c))), maxLength: 24 })

interface Shape {
  /** The request line's method (the record's is the head's, as on the request path). */
  method: string
  absolute: boolean
  incomplete: boolean
  /** The request line complete, the head not. */
  partial: boolean
  /** Bytes before the head in the parser's buffer. */
  offset: number
  path: string
  host: Buffer | null
  ua: Buffer | null
  referer: Buffer | null
  minor: number
}

function parse (shape: Shape): HeadParser {
  const p = new HeadParser(KIND_REQUEST, LIMITS)
  if (shape.incomplete) {
    const head = Buffer.from('GE', 'latin1')
    p.execute(head, 0, head.length)
    return p
  }
  const line = shape.absolute ? `${shape.method} http://abs.example:8080${shape.path} HTTP/1.${shape.minor}\r\n` : `${shape.method} ${shape.path} HTTP/1.${shape.minor}\r\n`
  const parts: Buffer[] = [Buffer.alloc(shape.offset, 0x41), Buffer.from(line, 'latin1')]
  if (shape.host !== null || shape.minor === 1) parts.push(Buffer.from('Host: ', 'latin1'), shape.host ?? Buffer.from('h.example', 'latin1'), Buffer.from('\r\n'))
  if (shape.ua !== null) parts.push(Buffer.from('User-Agent: ', 'latin1'), shape.ua, Buffer.from('\r\n'))
  if (shape.referer !== null) parts.push(Buffer.from('Referer: ', 'latin1'), shape.referer, Buffer.from('\r\n'))
  if (!shape.partial) parts.push(Buffer.from('\r\n'))
  const head = Buffer.concat(parts)
  const n = p.execute(head, shape.offset, head.length)
  assert.equal(n, shape.partial ? HEAD_INCOMPLETE : head.length, `the head parses: ${JSON.stringify(head.toString('latin1'))}`)
  assert.equal(p.headLength > 0, !shape.partial)
  assert.ok(p.targetEnd > 0, 'the request line is complete')
  return p
}

/** A complete GET head with only Host (or none), for the tests of one field at a time. */
function plainHead (path = '/', host: Buffer | null = null): HeadParser {
  return parse({ method: 'GET', absolute: false, incomplete: false, partial: false, offset: 0, path, host, ua: null, referer: null, minor: 1 })
}

/** A record of such a head with nothing to say but `fields`. */
function plainRecord (parser: HeadParser, fields: Partial<AccessRecord> = {}): AccessRecord {
  return { clientIp: '192.0.2.1', method: 'GET', target: '', parser, status: 200, entry: null, bytesOut: 1, bytesIn: 2, startedAt: 0, upstreamMs: -1, flag: '-', ...fields }
}

const record = fc.record({
  shape: fc.record({
    method: fc.oneof(fc.constantFrom('GET', 'HEAD', 'POST', 'OPTIONS'), fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/).filter((m) => m !== 'CONNECT')),
    absolute: fc.boolean(),
    incomplete: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
    partial: fc.integer({ min: 0, max: 9 }).map((n) => n < 2),
    offset: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300 })),
    path: target,
    host: fc.option(hostValue),
    ua: fc.option(fieldValue),
    referer: fc.option(fieldValue),
    minor: fc.constantFrom(0, 1),
  }),
  clientIp: text,
  address: fc.option(text),
  requestId: fc.option(text),
  flag: text,
  route: fc.option(text),
  pool: fc.option(text),
  status: fc.integer({ min: 100, max: 599 }),
  bytesOut: fc.oneof(fc.constantFrom(0, 9, 10, 99, 100, 2 ** 53 - 1), fc.integer({ min: 0, max: 2 ** 40 })),
  bytesIn: fc.oneof(fc.integer({ min: 0, max: 2 ** 31 }), fc.constant(2 ** 52 + 1)),
  /** Bytes already in the log buffer before the line. */
  before: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5000 })),
  durationMs: fc.oneof(fc.constantFrom(0, 0.0005, 0.0015, 1.2345, 999.9995, 1000, 86_400_000.25), fc.double({ min: 0, max: 1e7, noNaN: true })),
  upstreamMs: fc.oneof(fc.constant(-1), fc.constantFrom(0, 0.0005, 2.0004999), fc.double({ min: 0, max: 1e6, noNaN: true })),
  retries: fc.option(fc.integer({ min: 0, max: 20 }), { nil: undefined }),
  proto: fc.option(fc.constantFrom('http', 'https'), { nil: undefined }),
  redactQuery: fc.boolean(),
})

type Drawn = typeof record extends fc.Arbitrary<infer T> ? T : never

function toRecord (d: Drawn, now: number): AccessRecord {
  const parser = parse(d.shape)
  return {
    clientIp: d.clientIp,
    method: parser.method,
    target: '',
    parser,
    status: d.status,
    entry: d.address === null ? null : { address: d.address } as unknown as UpstreamEntry,
    bytesOut: d.bytesOut,
    bytesIn: d.bytesIn,
    startedAt: now - d.durationMs,
    upstreamMs: d.upstreamMs,
    requestId: d.requestId ?? undefined,
    retries: d.retries,
    route: d.route === null ? null : { name: d.route },
    pool: d.pool === null ? null : { name: d.pool },
    proto: d.proto,
    flag: d.flag,
  }
}

/** Lines are built here and taken out at once: held, never written. */
const sink = new LogSink('/dev/null')
sink.hold()

/** One line built the chosen way, after `before` bytes already in the buffer. */
function lineOf (r: AccessRecord, native: boolean, redactQuery: boolean, before = 0): Buffer {
  const saved = { on: accessLog.on, sink: accessLog.sink, redactQuery: accessLog.redactQuery }
  accessLog.on = true
  accessLog.sink = sink
  accessLog.redactQuery = redactQuery
  try {
    assert.equal(useNativeLine(native), native)
    assert.ok(sink.reserve(before))
    sink.buf.fill(0x2e, 0, before)
    sink.commit(before)
    logAccess(r)
    return Buffer.from(sink.buf.subarray(before, sink.len))
  } finally {
    Object.assign(accessLog, saved)
    sink.len = 0
  }
}

const haveNative = useNativeLine(true)

test('the C builder is there (the addon is built with it)', () => {
  assert.equal(haveNative, true, 'build/Release/fdhandoff.node exports accessLine')
})

test('C and JavaScript write the same line for random records, and it is JSON that reads back', { skip: !haveNative }, () => {
  const declinedBefore = nativeLineDeclines()
  fc.assert(fc.property(record, (d) => {
    // inside a read callback the clock is read once (src/proxy/clock.ts): both lines see one reading,
    // so their times and durations are the same to the byte
    beginRead()
    let js: Buffer
    let c: Buffer
    try {
      const r = toRecord(d, monotonicNow())
      js = lineOf(r, false, d.redactQuery, d.before)
      c = lineOf(r, true, d.redactQuery, d.before)
    } finally { endRead() }
    assert.equal(c.toString('latin1'), js.toString('latin1'))
    const line = JSON.parse(c.toString('latin1')) as Record<string, unknown>
    assert.equal(line.status, d.status)
    assert.equal(line.bytes, d.bytesOut)
    // startedAt = now - durationMs, read back as now - startedAt: equal to within a rounding
    assert.ok(Math.abs((line.durationMs as number) - d.durationMs) <= 0.0011, `durationMs ${String(line.durationMs)} for ${d.durationMs}`)
    assert.equal(line.upstreamMs, d.upstreamMs >= 0 ? Math.round(d.upstreamMs * 1000) / 1000 : null)
    assert.equal(line.retries, d.retries)
    assert.equal(line.tls, d.proto === undefined ? undefined : d.proto === 'https')
    // what both builders take from the head (headSpans): path, host, user agent, referer, version
    const sh = d.shape
    const headDone = !sh.incomplete && !sh.partial
    const target = (sh.absolute ? 'http://abs.example:8080' : '') + sh.path // the target as received
    const path = sh.incomplete ? '' : d.redactQuery ? target.split('?')[0] : target
    assert.equal(line.path, path)
    assert.equal(line.method, sh.incomplete ? '' : sh.method)
    assert.equal(line.httpVersion, sh.incomplete ? null : `1.${sh.minor}`)
    const host = !headDone ? null : sh.absolute ? 'abs.example:8080' : sh.host !== null ? sh.host.toString('latin1') : sh.minor === 1 ? 'h.example' : null
    assert.equal(line.host, host)
    assert.equal(line.userAgent, headDone && sh.ua !== null ? sh.ua.toString('latin1') : null)
    assert.equal(line.referer, headDone && sh.referer !== null ? sh.referer.toString('latin1') : null)
    assert.equal(c[c.length - 1], 0x0a)
  }), { numRuns: 2000 })
  assert.equal(nativeLineDeclines(), declinedBefore, 'C wrote every line (none left to JavaScript)')
})

test('durations and times are the same to the byte when the clock is the same', { skip: !haveNative }, () => {
  const parser = plainHead('/x?q=1', Buffer.from('a.example'))
  for (const durationMs of [0, 0.0005, 0.0004999, 1.0005, 12.3455, 999.9995, 1234567.891]) {
    // inside a read callback the clock is read once (src/proxy/clock.ts): both lines see one reading
    beginRead()
    try {
      const r: AccessRecord = plainRecord(parser, { startedAt: monotonicNow() - durationMs, upstreamMs: durationMs })
      const [c, js] = [lineOf(r, true, false), lineOf(r, false, false)]
      assert.equal(c.toString('latin1'), js.toString('latin1'))
    } finally { endRead() }
  }
})

test('numbers past 2^53, Infinity and NaN are written the same by both, as 2^53 and 0', { skip: !haveNative }, () => {
  const parser = plainHead()
  for (const n of [2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 60, 1e300, Infinity, Number.NaN, -Infinity]) {
    beginRead()
    try {
      const r: AccessRecord = plainRecord(parser, { bytesOut: n, bytesIn: n, startedAt: monotonicNow() - n, upstreamMs: n, retries: n })
      const [c, js] = [lineOf(r, true, false), lineOf(r, false, false)]
      assert.equal(c.toString('latin1'), js.toString('latin1'), String(n))
      const line = JSON.parse(c.toString('latin1')) as { bytes: number, retries: number }
      const expected = n > 2 ** 53 ? 2 ** 53 : n > 0 ? n : 0
      assert.deepEqual([line.bytes, line.retries], [expected, expected], String(n))
    } finally { endRead() }
  }
})

test('strings and names up to 1,023 units are written in C; a longer one is left to JavaScript, the same bytes', { skip: !haveNative }, () => {
  const parser = plainHead()
  // the request ID is a string handed to each call, a route's name one C keeps by number (name())
  const cases: Array<[string, number, number, (text: string) => Partial<AccessRecord>, (line: Record<string, unknown>) => unknown]> = [
    ['request ID', 1023, 0, (requestId) => ({ requestId }), (line) => line.requestId],
    ['request ID', 1024, 1, (requestId) => ({ requestId }), (line) => line.requestId],
    ['request ID', 5000, 1, (requestId) => ({ requestId }), (line) => line.requestId],
    ['route', 1023, 0, (name) => ({ route: { name } }), (line) => line.route],
    ['route', 1024, 1, (name) => ({ route: { name } }), (line) => line.route],
  ]
  for (const [field, length, declines, fields, read] of cases) {
    const text = 'x'.repeat(length - 1) + (field === 'route' ? '\\' : '"')
    const r: AccessRecord = plainRecord(parser, fields(text))
    beginRead()
    try {
      const before = nativeLineDeclines()
      const c = lineOf(r, true, false)
      assert.equal(nativeLineDeclines() - before, declines, `${field}: ${length} units`)
      assert.equal(c.toString('latin1'), lineOf(r, false, false).toString('latin1'))
      assert.equal(read(JSON.parse(c.toString('latin1')) as Record<string, unknown>), text)
    } finally { endRead() }
  }
})

test('every byte at every place of a 16- and an 8-byte block is escaped as JavaScript does', { skip: !haveNative }, () => {
  // C looks at 16 bytes at a time (SSE2) or 8 (elsewhere), then at one: a byte to escape in any of
  // them, first, last or alone, and the blocks around it clean
  const parser = plainHead()
  const declinedBefore = nativeLineDeclines()
  beginRead()
  try {
    for (const length of [8, 16, 17, 25, 40]) {
      for (let at = 0; at < length; at++) {
        for (let b = 0; b < 256; b++) {
          const requestId = 'a'.repeat(at) + String.fromCharCode(b) + 'z'.repeat(length - at - 1)
          const r: AccessRecord = plainRecord(parser, { requestId })
          const c = lineOf(r, true, false)
          const js = lineOf(r, false, false)
          if (!c.equals(js)) assert.equal(c.toString('latin1'), js.toString('latin1'), `byte ${b} at ${at} of ${length}`)
        }
      }
    }
  } finally { endRead() }
  assert.equal(nativeLineDeclines(), declinedBefore)
})

test('a record whose method is not the one in its head is written by JavaScript, the same bytes', { skip: !haveNative }, () => {
  const parser = plainHead()
  const r: AccessRecord = plainRecord(parser, { method: 'PURGE' })
  beginRead()
  try {
    const before = nativeLineDeclines()
    const c = lineOf(r, true, false)
    assert.equal(nativeLineDeclines() - before, 1)
    assert.equal(c.toString('latin1'), lineOf(r, false, false).toString('latin1'))
    assert.equal((JSON.parse(c.toString('latin1')) as { method: string }).method, 'PURGE')
  } finally { endRead() }
})

test('names past what C keeps are numbered again from 0: every line still right, none declined', { skip: !haveNative }, () => {
  const parser = plainHead()
  const declinedBefore = nativeLineDeclines()
  beginRead()
  try {
    // two or three new names a line, about 10,700 in all: two renumberings of the 4,096 C keeps; the address
    // and the flag come back as earlier lines had them, after being renumbered
    for (let i = 0; i < 4000; i++) {
      const r = plainRecord(parser, {
        entry: { address: `10.0.${i % 7}.1:80` } as unknown as UpstreamEntry,
        route: { name: `route-${i}` },
        pool: { name: `pool-${i}` },
        flag: i % 3 === 0 ? '-' : `F${i}`,
      })
      const c = lineOf(r, true, false)
      if (i % 97 === 0 || i > 3990) assert.equal(c.toString('latin1'), lineOf(r, false, false).toString('latin1'), `line ${i}`)
      const line = JSON.parse(c.toString('latin1')) as { upstream: string, route: string, pool: string, flag: string }
      assert.deepEqual([line.upstream, line.route, line.pool, line.flag], [`10.0.${i % 7}.1:80`, `route-${i}`, `pool-${i}`, i % 3 === 0 ? '-' : `F${i}`])
    }
  } finally { endRead() }
  assert.equal(nativeLineDeclines(), declinedBefore)
})

test('lines follow the sink: its buffer grown, another sink, and back', { skip: !haveNative }, () => {
  // C is told the buffer only when it changes (src/proxy/access-line-native.ts): every line must land in the
  // sink's buffer of the moment, the same bytes as JavaScript's
  const parser = plainHead('/p')
  const r: AccessRecord = plainRecord(parser, { requestId: 'id' })
  const first = new LogSink('/dev/null')
  const second = new LogSink('/dev/null')
  first.hold()
  second.hold()
  const saved = { on: accessLog.on, sink: accessLog.sink }
  const declinedBefore = nativeLineDeclines()
  accessLog.on = true
  beginRead()
  try {
    useNativeLine(false)
    accessLog.sink = first
    logAccess(r)
    const expected = Buffer.from(first.buf.subarray(0, first.len))
    first.len = 0
    useNativeLine(true)
    const buffers = new Set<Buffer>()
    for (let i = 0; i < 600; i++) {
      const sink = i % 200 < 100 ? first : second // 100 lines to one, 100 to the other...
      accessLog.sink = sink
      const before = sink.len
      logAccess(r)
      buffers.add(sink.buf)
      assert.ok(sink.buf.subarray(before, sink.len).equals(expected), `line ${i}`)
    }
    assert.ok(buffers.size >= 4, `the buffers grew (${buffers.size} seen)`)
    for (const sink of [first, second]) {
      const text = sink.buf.subarray(0, sink.len).toString('latin1')
      assert.equal(text, expected.toString('latin1').repeat(300), 'every line in its own sink, whole')
    }
  } finally {
    endRead()
    Object.assign(accessLog, saved)
  }
  assert.equal(nativeLineDeclines(), declinedBefore)
})

interface LineFunctions {
  line: (pos: number, limit: number, src: Buffer, clientIp: string, requestId: string) => number
  target: (out: unknown) => boolean
  name: (id: number, text: unknown) => boolean
  maxNames: number
}

test('the C builder declines without a target, an unset name, spans outside the head, NaN and a limit it could pass, and writes nothing', { skip: !haveNative }, () => {
  const addon = optionalHandoff() as unknown as { accessLineSetup: (prefix: Buffer, bindings: Buffer, nums: Float64Array) => LineFunctions | null }
  const nums = new Float64Array(24).fill(-1)
  const fns = addon.accessLineSetup(Buffer.from('{"t":"'), Buffer.from('",'), nums)
  assert.ok(fns !== null)
  assert.equal(fns.maxNames, 4096)
  const src = Buffer.from('GET /x HTTP/1.1\r\n\r\n')
  const out = Buffer.alloc(4096, 0x2e)
  const write = (limit = out.length): number => fns.line(10, limit, src, '1.2.3.4', '')
  nums[0] = Date.UTC(2026, 11, 2)
  nums[3] = 200
  nums[1] = 4 // path
  nums[2] = 6
  nums[18] = 0 // method
  nums[19] = 3
  nums[4] = 0 // no upstream
  nums[21] = 7 // flag: name 7
  assert.equal(fns.name(6, '-'), true)
  nums[21] = 6
  assert.equal(write(), -1, 'no target yet')
  assert.equal(fns.target('not a buffer'), false)
  assert.equal(write(), -1, 'still no target')
  assert.equal(fns.target(out), true)
  nums[21] = 7
  assert.equal(write(), -1, 'name 7 is not set')
  assert.equal(fns.name(4096, '-'), false, 'no such name')
  assert.equal(fns.name(-1, '-'), false, 'no such name')
  assert.equal(fns.name(7, 'x'.repeat(1024)), false, 'too long')
  assert.equal(fns.name(7, 5), false, 'not a string')
  assert.ok(out.every((b) => b === 0x2e), 'nothing was written')
  assert.equal(fns.name(7, '-'), true)
  const end = write()
  assert.ok(end > 10)
  const line = JSON.parse(out.subarray(10, end).toString('latin1')) as Record<string, unknown>
  assert.deepEqual([line.method, line.path, line.flag, line.upstream], ['GET', '/x', '-', null])
  out.fill(0x2e)
  // [which span's start index, start, end]: NaN, outside the head, backwards, a fraction
  const spans: Array<[number, number, number]> = [
    [1, 4, Number.NaN], [1, Number.NaN, 6], [1, 4, 99], [1, -5, 6], [1, 6, 4], [1, 4.5, 6],
    [9, Number.NaN, 2], [9, 3, 1], [11, 0, 100], [13, 0.5, 2], [13, -2, 2], [18, 0, 99], [18, Number.NaN, 3],
  ]
  for (const [at, start, end] of spans) {
    const saved = Float64Array.from(nums)
    nums[at] = start
    nums[at + 1] = end
    assert.equal(write(), -1, `nums[${at}], nums[${at + 1}] = ${start}, ${end}`)
    nums.set(saved)
  }
  // names: an upstream whose name is unset, one not a whole number, a route out of range
  for (const [at, value] of [[20, 3], [21, 7.5], [22, 4096], [23, Number.NaN], [21, -2]]) {
    const saved = Float64Array.from(nums)
    nums[4] = at === 20 ? 1 : 0
    nums[at] = value
    assert.equal(write(), -1, `nums[${at}] = ${value}`)
    nums.set(saved)
  }
  assert.equal(write(10 + 200), -1, 'a limit the worst case could pass')
  assert.ok(out.every((b) => b === 0x2e), 'nothing was written')
  // a new target: lines go there, the old buffer is left alone
  const other = Buffer.alloc(1024, 0x2e)
  assert.equal(fns.target(other), true)
  assert.ok(fns.line(0, other.length, src, '1.2.3.4', 'id-1') > 0)
  assert.equal((JSON.parse(other.subarray(0, other.indexOf(0x0a)).toString('latin1')) as { requestId: string }).requestId, 'id-1')
  assert.ok(out.every((b) => b === 0x2e), 'nothing was written to the old target')
})
