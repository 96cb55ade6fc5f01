/**
 * ChunkedScanner (RFC 9112 §7.1): valid bodies with extensions and trailers,
 * every malformed framing, each fed whole, byte by byte and split in two at
 * every position (chunkedSameAllWays), which must all agree.
 *
 * Re-encoding: the data spans of each execute() and the canonical bytes that
 * encode() makes of them are checked against two small decoders written here
 * (a lenient one for the input, a strict canonical-only one for the output),
 * fed whole, byte by byte, split everywhere and at random cuts (fast-check).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  ChunkedScanner, CHUNKED_ERROR, CHUNKED_MORE, chunkSizeLine, hexLength, writeChunkSizeLine, CRLF,
} from '../../src/http/chunked'
import { DROPPED_TRAILER_NAMES, isDroppedTrailer } from '../../src/http/trailers'
import {
  chunkedSameAllWays, feedChunked, bytes, singleCuts, byteCuts, wholeCuts, cutsFrom, deepEqual, show,
  chunkExtArb, token, fieldValue, partitionsArb, DEFAULT_TRAILER_BYTES, type Cuts,
} from './parser-cases'

interface Valid { name: string, body: string, dataBytes: number, tail?: string }

const VALID: Valid[] = [
  { name: 'one chunk', body: '5\r\nhello\r\n0\r\n\r\n', dataBytes: 5 },
  { name: 'empty body', body: '0\r\n\r\n', dataBytes: 0 },
  { name: 'several chunks, both hex cases', body: 'a\r\n0123456789\r\nB\r\n0123456789a\r\n1\r\nz\r\n0\r\n\r\n', dataBytes: 22 },
  { name: 'leading zeros in sizes', body: '0005\r\nhello\r\n00000000000000000000\r\n\r\n', dataBytes: 5 },
  { name: 'many leading zeros before one digit', body: '00000000000000001\r\nx\r\n0\r\n\r\n', dataBytes: 1 },
  { name: 'data holding CRLF and 0\\r\\n\\r\\n', body: '7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n', dataBytes: 7 },
  { name: 'binary data', body: '4\r\n\x00\xff\r\n\r\n0\r\n\r\n', dataBytes: 4 },
  { name: 'extension without value', body: '5;a\r\nhello\r\n0;last\r\n\r\n', dataBytes: 5 },
  { name: 'extension with token value', body: '5;a=b;c=d-e.f\r\nhello\r\n0\r\n\r\n', dataBytes: 5 },
  { name: 'extension with quoted value', body: '5;a="b c;d=e,\\"f\\\\"\r\nhello\r\n0\r\n\r\n', dataBytes: 5 },
  { name: 'quoted value with HTAB and obs-text', body: '5;a="\t\x80\xff"\r\nhello\r\n0\r\n\r\n', dataBytes: 5 },
  { name: 'empty quoted value', body: '5;a=""\r\nhello\r\n0\r\n\r\n', dataBytes: 5 },
  { name: 'BWS around extension parts (RFC 9112 §7.1.1)', body: '5 ; a = b ;\tc\t=\t"d" ; e\r\nhello\r\n0\r\n\r\n', dataBytes: 5 },
  { name: 'trailers', body: '5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-Empty:\r\nX-Obs: \x80 \t\r\n\r\n', dataBytes: 5 },
  { name: 'pipelined bytes after the body are not taken', body: '5\r\nhello\r\n0\r\n\r\n', tail: 'GET / HTTP/1.1\r\n', dataBytes: 5 },
]

interface Invalid { name: string, body: string, maxTrailerBytes?: number }

const INVALID: Invalid[] = [
  { name: 'non-hex size', body: 'g\r\nhello\r\n0\r\n\r\n' },
  { name: 'non-hex after digits', body: '5g\r\nhello\r\n0\r\n\r\n' },
  { name: 'empty size', body: '\r\nhello\r\n0\r\n\r\n' },
  { name: '0x prefix', body: '0x10\r\n0123456789abcdef\r\n0\r\n\r\n' },
  { name: 'negative size', body: '-5\r\nhello\r\n0\r\n\r\n' },
  { name: 'plus sign', body: '+5\r\nhello\r\n0\r\n\r\n' },
  { name: 'space before size', body: ' 5\r\nhello\r\n0\r\n\r\n' },
  { name: 'whitespace after size without extension', body: '5 \r\nhello\r\n0\r\n\r\n' },
  { name: 'fourteen significant hex digits (2^52 and up)', body: '10000000000000\r\nx\r\n0\r\n\r\n' },
  { name: 'size overflowing 64 bits', body: 'ffffffffffffffffff\r\nx\r\n0\r\n\r\n' },
  { name: 'CRLF missing after data', body: '5\r\nhelloX\r\n0\r\n\r\n' },
  { name: 'CR missing after data', body: '5\r\nhello\n0\r\n\r\n' },
  { name: 'LF missing after data', body: '5\r\nhello\rX0\r\n\r\n' },
  { name: 'data shorter than size', body: '6\r\nhello\r\n0\r\n\r\n' },
  { name: 'bare LF after size', body: '5\nhello\r\n0\r\n\r\n' },
  { name: 'bare CR after size', body: '5\rhello\r\n0\r\n\r\n' },
  { name: 'bare LF after last chunk', body: '5\r\nhello\r\n0\n\r\n' },
  { name: 'bare LF ends the body', body: '5\r\nhello\r\n0\r\n\n' },
  { name: 'CR CR at the end', body: '5\r\nhello\r\n0\r\n\r\r' },
  { name: 'bare LF ends a trailer', body: '5\r\nhello\r\n0\r\nX: y\n\r\n' },
  { name: 'bare CR in a trailer', body: '5\r\nhello\r\n0\r\nX: y\rz\r\n\r\n' },
  { name: 'trailer without colon', body: '0\r\nX-A\r\n\r\n' },
  { name: 'trailer with space before colon', body: '0\r\nX-A : b\r\n\r\n' },
  { name: 'trailer with empty name', body: '0\r\n: b\r\n\r\n' },
  { name: 'obs-fold in trailers', body: '0\r\nX-A: b\r\n c\r\n\r\n' },
  { name: 'NUL in a trailer value', body: '0\r\nX-A: b\x00\r\n\r\n' },
  { name: 'DEL in a trailer value', body: '0\r\nX-A: b\x7f\r\n\r\n' },
  { name: 'trailer section too large', body: '0\r\nX-A: ' + 'a'.repeat(100) + '\r\n\r\n', maxTrailerBytes: 64 },
  { name: 'many trailers too large together', body: '0\r\n' + 'X: aaaaaaaa\r\n'.repeat(10) + '\r\n', maxTrailerBytes: 64 },
  { name: 'empty extension', body: '5;\r\nhello\r\n0\r\n\r\n' },
  { name: 'extension without name', body: '5;=b\r\nhello\r\n0\r\n\r\n' },
  { name: 'extension with empty value', body: '5;a=\r\nhello\r\n0\r\n\r\n' },
  { name: 'space inside an extension value', body: '5;a=b c\r\nhello\r\n0\r\n\r\n' },
  { name: 'space inside an extension name', body: '5;a b\r\nhello\r\n0\r\n\r\n' },
  { name: 'whitespace at the end of the size line', body: '5;a=b \r\nhello\r\n0\r\n\r\n' },
  { name: 'bytes after a quoted value', body: '5;a="b"c\r\nhello\r\n0\r\n\r\n' },
  { name: 'unterminated quoted value', body: '5;a="b\r\nhello\r\n0\r\n\r\n' },
  { name: 'CTL inside a quoted value', body: '5;a="b\x01"\r\nhello\r\n0\r\n\r\n' },
  { name: 'quoted-pair of a CTL', body: '5;a="b\\\x01"\r\nhello\r\n0\r\n\r\n' },
  { name: 'obs-text in a token value', body: '5;a=b\x80\r\nhello\r\n0\r\n\r\n' },
  { name: 'NUL in an extension', body: '5;a\x00\r\nhello\r\n0\r\n\r\n' },
  { name: 'bare LF in an extension', body: '5;a=b\nhello\r\n0\r\n\r\n' },
  { name: 'bare CR in an extension', body: '5;a=b\rc\r\nhello\r\n0\r\n\r\n' },
  { name: 'size line too long', body: '5;a="' + 'x'.repeat(5000) + '"\r\nhello\r\n0\r\n\r\n' },
]

describe('ChunkedScanner: valid bodies', () => {
  for (const c of VALID) {
    it(c.name, () => {
      const text = c.body + (c.tail ?? '')
      const r = chunkedSameAllWays(bytes(text))
      assert.equal(r.outcome, 'done', r.error)
      assert.equal(r.end, c.body.length)
      assert.equal(r.dataBytes, c.dataBytes)
    })
  }

  it('needs more bytes at every proper prefix, then ends', () => {
    const body = bytes('3;x="y"\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n')
    for (let n = 0; n < body.length; n++) {
      const r = feedChunked(body.subarray(0, n), [])
      assert.equal(r.outcome, 'more', `prefix of ${n} bytes`)
    }
    assert.equal(feedChunked(body, []).outcome, 'done')
  })

  it('accepts thirteen significant hex digits (then waits for that much data)', () => {
    const r = chunkedSameAllWays(bytes('0001000000000000;a=b\r\nabc'))
    assert.deepEqual(r, { outcome: 'more', end: -1, error: '', dataBytes: 3 })
  })

  it('takes data in one step however it is split, and counts it', () => {
    const data = Buffer.alloc(70_000, 0x61)
    const body = Buffer.concat([bytes('11170\r\n'), data, bytes('\r\n0\r\n\r\n')])
    for (const cuts of [[], [1], [7], [8], [7 + 70_000], [7 + 70_001], [100, 40_000, 70_008]]) {
      const r = feedChunked(body, cuts)
      assert.deepEqual(r, { outcome: 'done', end: body.length, error: '', dataBytes: 70_000 }, JSON.stringify(cuts))
    }
  })

  it('works again after reset(), from any state', () => {
    const c = new ChunkedScanner(1024)
    const good = bytes('5\r\nhello\r\n0\r\n\r\n')
    for (const stop of [1, 3, 6, 12, 14]) {
      c.reset()
      assert.equal(c.execute(good, 0, stop), CHUNKED_MORE)
      c.reset()
      assert.equal(c.execute(good, 0, good.length), good.length)
      assert.equal(c.done, true)
      assert.equal(c.dataBytes, 5)
    }
    c.reset()
    assert.equal(c.execute(bytes('z'), 0, 1), CHUNKED_ERROR)
    c.reset()
    assert.equal(c.error, '')
    assert.equal(c.execute(good, 0, good.length), good.length)
  })

  it('counts the size-line limit per line, not per body', () => {
    const ext = ';a=' + 'x'.repeat(3000)
    const body = bytes(`1${ext}\r\na\r\n1${ext}\r\nb\r\n0${ext}\r\n\r\n`)
    assert.equal(chunkedSameAllWays(body).outcome, 'done')
  })

  it('scans a body that starts in the middle of a buffer', () => {
    const buf = bytes('HEAD-BYTES5\r\nhello\r\n0\r\n\r\nNEXT')
    const c = new ChunkedScanner(1024)
    assert.equal(c.execute(buf, 10, buf.length), buf.length - 4)
  })
})

describe('ChunkedScanner: malformed bodies (whole, byte by byte, split everywhere)', () => {
  for (const c of INVALID) {
    it(c.name, () => {
      const r = chunkedSameAllWays(bytes(c.body), c.maxTrailerBytes)
      assert.equal(r.outcome, 'error', `${JSON.stringify(c.body).slice(0, 80)} gave ${JSON.stringify(r)}`)
      assert.notEqual(r.error, '')
    })
  }

  it('never reads past end: an error byte just outside the window is not seen', () => {
    const body = bytes('5\r\nhello\r\nZ')
    for (const cuts of singleCuts(body.length - 1)) {
      const r = feedChunked(body.subarray(0, body.length - 1), cuts)
      assert.ok(deepEqual(r, { outcome: 'more', end: -1, error: '', dataBytes: 5 }))
    }
  })
})

// ---------------------------------------------------------------------------
// Re-encoding: spans, canonical output, trailers

/** RFC 9110 §6.5.1 fields the proxy drops from trailers: written out here, independently of src/http/trailers.ts. */
const DROPPED = [
  'Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer',
  'Upgrade', 'Authorization', 'Proxy-Authorization', 'Proxy-Authenticate', 'WWW-Authenticate', 'Set-Cookie', 'Cookie',
  'Cache-Control', 'Expires', 'Date', 'Age', 'Location', 'Retry-After', 'Vary', 'Warning', 'Max-Forwards', 'Pragma',
  'Range', 'If-Match', 'If-None-Match', 'If-Modified-Since', 'If-Unmodified-Since', 'If-Range', 'Expect',
  'Content-Encoding', 'Content-Type', 'Content-Range', 'Content-Location', 'Forwarded', 'X-Forwarded-For',
  'X-Forwarded-Proto', 'X-Forwarded-Host', 'Via',
]
const DROPPED_LOWER = new Set(DROPPED.map((n) => n.toLowerCase()))

/** A lenient decoder of a valid chunked body (extensions skipped): the data and `name: value\r\n` of the kept trailers. */
function naiveDecode (body: string): { data: string, kept: string } {
  let pos = 0
  let data = ''
  for (;;) {
    const lineEnd = body.indexOf('\r\n', pos)
    const size = parseInt(/^[0-9a-fA-F]+/.exec(body.slice(pos, lineEnd))![0], 16)
    pos = lineEnd + 2
    if (size === 0) break
    data += body.slice(pos, pos + size)
    pos += size + 2
  }
  let kept = ''
  for (;;) {
    const lineEnd = body.indexOf('\r\n', pos)
    if (lineEnd === pos) break
    const line = body.slice(pos, lineEnd)
    const colon = line.indexOf(':')
    const name = line.slice(0, colon)
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')
    if (!DROPPED_LOWER.has(name.toLowerCase())) kept += value === '' ? `${name}:\r\n` : `${name}: ${value}\r\n`
    pos = lineEnd + 2
  }
  return { data, kept }
}

/**
 * A strict decoder that takes canonical chunked framing only: lowercase hex without
 * leading zeros, no extensions, trailers `name: value` or `name:`. Throws otherwise.
 */
function strictDecode (enc: string): { data: string, kept: string, complete: boolean } {
  let pos = 0
  let data = ''
  for (;;) {
    if (pos === enc.length) return { data, kept: '', complete: false }
    const m = /^(0|[1-9a-f][0-9a-f]*)\r\n/.exec(enc.slice(pos, pos + 20))
    if (m === null) throw new Error(`not a canonical chunk-size line at ${pos}: ${JSON.stringify(enc.slice(pos, pos + 20))}`)
    const size = parseInt(m[1], 16)
    pos += m[0].length
    if (size === 0) break
    data += enc.slice(pos, pos + size)
    pos += size
    if (enc.slice(pos, pos + 2) !== '\r\n') throw new Error(`no CRLF after chunk data at ${pos}`)
    pos += 2
  }
  const end = enc.indexOf('\r\n\r\n', pos - 2)
  const kept = enc.slice(pos, end + 2)
  if (!/^([!#$%&'*+\-.^_`|~0-9A-Za-z]+:( [^\r\n \t]([^\r\n]*[^\r\n \t])?)?\r\n)*$/.test(kept)) throw new Error(`bad trailers ${JSON.stringify(kept)}`)
  if (end + 4 !== enc.length) throw new Error(`bytes after the last chunk: ${JSON.stringify(enc.slice(end + 4))}`)
  return { data, kept, complete: true }
}

const GUARD = 5

interface Reencoded {
  outcome: 'done' | 'more' | 'error'
  end: number
  error: string
  /** The data of every call's spans, concatenated. */
  data: string
  /** encode(false) of every call, concatenated (depends on the cuts), and encode(true). */
  encoded: string
  dechunked: string
  kept: string
}

/** Feeds body cut at `cuts` (each piece copied between guard bytes) and checks each call's spans and encodings. */
function reencode (body: Uint8Array, cuts: Cuts, maxTrailerBytes = DEFAULT_TRAILER_BYTES, scanner?: ChunkedScanner): Reencoded {
  const c = scanner ?? new ChunkedScanner(maxTrailerBytes)
  c.reset()
  const r: Reencoded = { outcome: 'more', end: -1, error: '', data: '', encoded: '', dechunked: '', kept: '' }
  let from = 0
  for (const to of [...cuts, body.length]) {
    const buf = Buffer.alloc(to - from + 2 * GUARD, 0xa5)
    buf.set(body.subarray(from, to), GUARD)
    const start = GUARD
    const end = GUARD + to - from
    const e = c.execute(buf, start, end)
    let sum = 0
    let prev = start
    for (let i = 0; i < c.spanCount; i++) {
      const s = c.spans[2 * i]
      const t = c.spans[2 * i + 1]
      assert.ok(s >= prev && t > s && t <= (e >= 0 ? e : end), `span ${i} [${s}, ${t}) in [${start}, ${end})`)
      sum += t - s
      r.data += buf.latin1Slice(s, t)
      prev = t
    }
    assert.equal(c.spanBytes, sum)
    const enc = c.encode(buf, false)
    const dec = c.encode(buf, true)
    assert.equal(enc?.length ?? 0, c.encodedLength(false))
    assert.equal(dec?.length ?? 0, c.encodedLength(true))
    for (const dechunk of [false, true]) { // encodeInto after a head, as a caller would
      const out = Buffer.alloc(7 + c.encodedLength(dechunk) + 3, 0x5a)
      assert.equal(c.encodeInto(buf, out, 7, dechunk), 7 + c.encodedLength(dechunk))
      assert.equal(out.latin1Slice(7, out.length - 3), (dechunk ? dec : enc)?.toString('latin1') ?? '')
      assert.equal(out.latin1Slice(0, 7) + out.latin1Slice(out.length - 3, out.length), 'Z'.repeat(10))
    }
    if (e === CHUNKED_ERROR) {
      assert.equal(enc, null)
      assert.equal(dec, null)
      return { ...r, outcome: 'error', error: c.error }
    }
    r.encoded += enc?.toString('latin1') ?? ''
    r.dechunked += dec?.toString('latin1') ?? ''
    assert.equal(c.endedThisCall, e !== CHUNKED_MORE)
    if (e !== CHUNKED_MORE) {
      assert.equal(c.done, true)
      return { ...r, outcome: 'done', end: from + (e - start), kept: c.keptTrailers().toString('latin1') }
    }
    assert.equal(c.keptTrailers().length, 0, 'no trailers before the body is done')
    from = to
  }
  return r
}

/** What must not depend on the cuts: everything but the chunk boundaries of `encoded`. */
function semantics (r: Reencoded): object {
  const decoded = r.outcome === 'error' ? null : strictDecode(r.encoded)
  return { outcome: r.outcome, end: r.end, error: r.error, data: r.data, dechunked: r.dechunked, kept: r.kept, decoded }
}

/** Whole, byte by byte and split in two everywhere (plus `more` cut lists): the same semantics every way. */
function reencodeAllWays (body: Uint8Array, more: Cuts[] = [], maxTrailerBytes?: number): Reencoded {
  const whole = reencode(body, wholeCuts(), maxTrailerBytes)
  const want = semantics(whole)
  for (const cuts of [byteCuts(body.length), ...singleCuts(body.length), ...more]) {
    const got = semantics(reencode(body, cuts, maxTrailerBytes))
    if (!deepEqual(got, want)) {
      assert.fail(`cuts ${JSON.stringify(cuts).slice(0, 80)} differ for ${show(body).slice(0, 200)}\n whole: ${JSON.stringify(want).slice(0, 400)}\n got:   ${JSON.stringify(got).slice(0, 400)}`)
    }
  }
  return whole
}

/** The checks every valid complete body must pass, against the lenient decoder of its input. */
function checkValid (text: string, more: Cuts[] = []): Reencoded {
  const body = bytes(text)
  const want = naiveDecode(text)
  const r = reencodeAllWays(body, more)
  assert.equal(r.outcome, 'done', r.error)
  assert.equal(r.data, want.data)
  assert.equal(r.dechunked, want.data)
  assert.equal(r.kept, want.kept)
  // fed whole: one data chunk (if any) and the last chunk, exactly
  const one = want.data.length > 0 ? `${want.data.length.toString(16)}\r\n${want.data}\r\n` : ''
  assert.equal(r.encoded, `${one}0\r\n${want.kept}\r\n`)
  return r
}

describe('ChunkedScanner: spans and canonical re-encoding', () => {
  for (const c of VALID) {
    it(`valid: ${c.name}`, () => { checkValid(c.body) })
  }

  const ENCODED: Array<{ name: string, body: string, encoded: string, dechunked: string | null }> = [
    { name: 'leading zeros removed', body: '0005\r\nhello\r\n00000000000000000000\r\n\r\n', encoded: '5\r\nhello\r\n0\r\n\r\n', dechunked: 'hello' },
    { name: 'extensions removed, last chunk included', body: '5;a=b\r\nhello\r\n3 ; x="1;2"\r\nabc\r\n0;last\r\nT: v\r\n\r\n', encoded: '8\r\nhelloabc\r\n0\r\nT: v\r\n\r\n', dechunked: 'helloabc' },
    { name: 'upper-case hex lowered', body: '00A\r\n0123456789\r\n0\r\n\r\n', encoded: 'a\r\n0123456789\r\n0\r\n\r\n', dechunked: '0123456789' },
    { name: 'empty body', body: '0;x=y\r\n\r\n', encoded: '0\r\n\r\n', dechunked: null },
    { name: 'framing trailers dropped, others kept in order', body: '1\r\nx\r\n0\r\nA: 1\r\nContent-Length: 5\r\ntransfer-encoding:chunked\r\nB:  2 \r\nHOST: evil\r\n\r\n', encoded: '1\r\nx\r\n0\r\nA: 1\r\nB: 2\r\n\r\n', dechunked: 'x' },
  ]
  for (const c of ENCODED) {
    it(`encode whole: ${c.name}`, () => {
      const s = new ChunkedScanner(1024)
      const buf = bytes('HEAD' + c.body + 'NEXT')
      assert.equal(s.execute(buf, 4, buf.length), buf.length - 4)
      assert.equal(s.encode(buf, false)?.toString('latin1') ?? null, c.encoded)
      assert.equal(s.encode(buf, true)?.toString('latin1') ?? null, c.dechunked)
      checkValid(c.body)
    })
  }

  it('spans are absolute indexes into the buffer given to execute(), reset every call', () => {
    const s = new ChunkedScanner(1024)
    const buf = bytes('xx3\r\nabc\r\n2\r\nde')
    assert.equal(s.execute(buf, 2, buf.length), CHUNKED_MORE)
    assert.equal(s.spanCount, 2)
    assert.deepEqual([...s.spans.subarray(0, 4)], [5, 8, 13, 15])
    assert.equal(s.spanBytes, 5)
    assert.equal(s.encode(buf, false)?.toString('latin1'), '5\r\nabcde\r\n')
    const next = bytes('\r\n0\r\n\r\n')
    assert.equal(s.execute(next, 0, next.length), next.length)
    assert.equal(s.spanCount, 0)
    assert.equal(s.spanBytes, 0)
    assert.equal(s.encode(next, false)?.toString('latin1'), '0\r\n\r\n')
    assert.equal(s.encode(next, true), null)
  })

  it('a call inside one chunk\'s data gives one span and one chunk', () => {
    const s = new ChunkedScanner(1024)
    const head = bytes('10\r\n0123')
    assert.equal(s.execute(head, 0, head.length), CHUNKED_MORE)
    assert.equal(s.encode(head, false)?.toString('latin1'), '4\r\n0123\r\n')
    const mid = bytes('456789ab')
    assert.equal(s.execute(mid, 0, mid.length), CHUNKED_MORE)
    assert.deepEqual([s.spanCount, s.spans[0], s.spans[1]], [1, 0, 8])
    assert.equal(s.encode(mid, false)?.toString('latin1'), '8\r\n456789ab\r\n')
    const framing = bytes('cdef\r')
    assert.equal(s.execute(framing, 0, 4), CHUNKED_MORE)
    assert.equal(s.execute(framing, 4, 5), CHUNKED_MORE)
    assert.equal(s.encode(framing, false), null, 'framing bytes alone: nothing to send')
  })

  it('big chunk sizes: thirteen hex digits, 70 000 bytes byte by byte and cut at the chunk edges', () => {
    const r = reencode(bytes('0001000000000000;a=b\r\nabc'), wholeCuts())
    assert.deepEqual([r.outcome, r.data, r.encoded], ['more', 'abc', '3\r\nabc\r\n'])
    const data = Buffer.alloc(70_000)
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff
    const text = '011170;big\r\n' + data.toString('latin1') + '\r\n0\r\n\r\n'
    const want = naiveDecode(text)
    const ways = [wholeCuts(), byteCuts(text.length), [100, 40_000, 70_008], [12, 12 + 70_000], [13, 65_536 + 13], [70_013, 70_014, 70_015]]
    for (const cuts of ways) {
      const r = reencode(bytes(text), cuts)
      assert.equal(r.data, want.data)
      assert.equal(r.dechunked, want.data)
      assert.deepEqual(strictDecode(r.encoded), { data: want.data, kept: '', complete: true })
    }
  })

  it('many tiny chunks: the span array doubles, encode makes one chunk, reset() gives the memory back', () => {
    const n = 65_536 / 6 | 0
    const text = '1\r\nx\r\n'.repeat(n) + '0\r\n\r\n'
    const buf = bytes(text)
    const s = new ChunkedScanner(1024)
    const small = s.spans
    assert.equal(s.execute(buf, 0, buf.length), buf.length)
    assert.equal(s.spanCount, n)
    assert.ok(s.spans.length >= 2 * n && s.spans !== small)
    assert.equal(s.encode(buf, false)?.toString('latin1'), `${n.toString(16)}\r\n${'x'.repeat(n)}\r\n0\r\n\r\n`)
    assert.equal(s.encode(buf, true)?.toString('latin1'), 'x'.repeat(n))
    s.reset()
    assert.ok(s.spans.length <= 2 * 1024)
    const few = s.spans
    const two = bytes('1\r\na\r\n1\r\nb\r\n')
    for (let i = 0; i < 3; i++) s.execute(two, 0, two.length)
    assert.equal(s.spans, few, 'no new span array while it fits')
  })

  it('chunkSizeLine / writeChunkSizeLine / hexLength', () => {
    const cases: Array<[number, string]> = [[0, '0'], [1, '1'], [15, 'f'], [16, '10'], [255, 'ff'], [4096, '1000'],
      [2 ** 31, '80000000'], [2 ** 32, '100000000'], [2 ** 52 - 1, 'fffffffffffff']]
    for (const [n, hex] of cases) {
      assert.equal(chunkSizeLine(n).toString('latin1'), hex + '\r\n')
      assert.equal(hexLength(n), hex.length)
      const out = Buffer.alloc(20)
      assert.equal(writeChunkSizeLine(out, 3, n), 3 + hex.length + 2)
    }
  })

  it('zero-copy path: chunkSizeLine + span views + CRLF + lastChunk() equals encode()', () => {
    const s = new ChunkedScanner(1024)
    const buf = bytes('3;e\r\nabc\r\n4\r\ndefg\r\n0\r\nX-T: 1\r\nVia: x\r\n\r\n')
    assert.equal(s.lastChunk(), null)
    assert.equal(s.execute(buf, 0, buf.length), buf.length)
    const parts: Buffer[] = [chunkSizeLine(s.spanBytes)]
    for (let i = 0; i < s.spanCount; i++) parts.push(buf.subarray(s.spans[2 * i], s.spans[2 * i + 1]))
    parts.push(CRLF, s.lastChunk() as Buffer)
    assert.equal(Buffer.concat(parts).toString('latin1'), s.encode(buf, false)?.toString('latin1'))
    assert.equal(s.lastChunk()?.toString('latin1'), '0\r\nX-T: 1\r\n\r\n')
  })

  it('after an error: encode() is null even when data came before it in the same call', () => {
    const s = new ChunkedScanner(1024)
    const buf = bytes('5\r\nhelloX')
    assert.equal(s.execute(buf, 0, buf.length), CHUNKED_ERROR)
    assert.equal(s.spanCount, 1)
    assert.equal(s.encode(buf, false), null)
    assert.equal(s.encode(buf, true), null)
    assert.equal(s.encodedLength(false), 0)
    assert.equal(s.encodeInto(buf, Buffer.alloc(8), 3, false), 3)
  })
})

describe('ChunkedScanner: trailer fields', () => {
  it('the drop list is RFC 9110 §6.5.1\'s (framing, routing, modifiers, authentication, response control, content)', () => {
    assert.deepEqual([...DROPPED_TRAILER_NAMES].sort(), [...DROPPED_LOWER].sort())
  })

  for (const name of DROPPED) {
    it(`drops ${name} in any case`, () => {
      const variants = [name, name.toLowerCase(), name.toUpperCase(), [...name].map((ch, i) => i % 2 === 0 ? ch.toLowerCase() : ch.toUpperCase()).join('')]
      for (const v of variants) {
        const r = checkValid(`1\r\nx\r\n0\r\nX-Before: 1\r\n${v}: whatever\r\nX-After: 2\r\n\r\n`)
        assert.equal(r.kept, 'X-Before: 1\r\nX-After: 2\r\n', v)
      }
    })
  }

  it('keeps names that only look like dropped ones', () => {
    const near = ['Hosts', 'X-Host', 'Hos', 'Content-Lengths', 'Content-Lengt', 'T', 'Tf', 'Dates', 'Ag', 'Vias', 'X-Forwarded-Port',
      'Server-Timing', 'ETag', 'Digest', 'Content-MD5', 'Authentication-Info']
    const text = '0\r\n' + near.map((n) => `${n}: v\r\n`).join('') + '\r\n'
    assert.equal(checkValid(text).kept, near.map((n) => `${n}: v\r\n`).join(''))
    for (const n of near) assert.equal(isDroppedTrailer(bytes(n), 0, n.length), false, n)
  })

  it('values lose surrounding OWS only; empty values stay empty; obs-text is kept', () => {
    const r = checkValid('0\r\nA:x\r\nB: \t a \t b \t \r\nC:\r\nD:   \r\nE: \x80\xff\r\n\r\n')
    assert.equal(r.kept, 'A: x\r\nB: a \t b\r\nC:\r\nD:\r\nE: \x80\xff\r\n')
  })

  it('a reused scanner starts with no trailers', () => {
    const s = new ChunkedScanner(1024)
    const first = bytes('0\r\nA: 1\r\n\r\n')
    s.execute(first, 0, first.length)
    assert.equal(s.keptTrailers().toString('latin1'), 'A: 1\r\n')
    s.reset()
    const second = bytes('0\r\n\r\n')
    assert.equal(s.execute(second, 0, second.length), second.length)
    assert.equal(s.keptTrailers().length, 0)
    assert.equal(s.encode(second, false)?.toString('latin1'), '0\r\n\r\n')
    // and from the middle of a trailer line
    s.reset()
    const partial = bytes('0\r\nLong-Name: abc')
    assert.equal(s.execute(partial, 0, partial.length), CHUNKED_MORE)
    s.reset()
    const third = bytes('0\r\nB: 2\r\n\r\n')
    assert.equal(s.execute(third, 0, third.length), third.length)
    assert.equal(s.keptTrailers().toString('latin1'), 'B: 2\r\n')
  })

  it('a trailer section near the limit grows the buffer and keeps everything', () => {
    const lines = Array.from({ length: 300 }, (_, i) => `X-${i}: ${'v'.repeat(i % 40)}`)
    const text = '0\r\n' + lines.map((l) => l + '\r\n').join('') + '\r\n'
    const counted = lines.reduce((n, l) => n + l.length + 1, 0) // the scanner counts each line and its CR
    const r = reencode(bytes(text), wholeCuts(), counted)
    assert.equal(r.outcome, 'done', r.error)
    assert.equal(r.kept, naiveDecode(text).kept)
    assert.equal(reencode(bytes(text), wholeCuts(), counted - 1).error, 'trailer section too large')
  })

  const TRAILER_ERRORS: Array<[string, string, string]> = [
    ['obs-fold', '0\r\nX-A: b\r\n c\r\n\r\n', 'obsolete line folding in trailer section'],
    ['obs-fold with HTAB', '0\r\nX-A: b\r\n\tc\r\n\r\n', 'obsolete line folding in trailer section'],
    ['space before colon', '0\r\nX-A : b\r\n\r\n', 'whitespace before colon in trailer field'],
    ['tab before colon', '0\r\nX-A\t: b\r\n\r\n', 'whitespace before colon in trailer field'],
    ['space before colon of a dropped name', '0\r\nHost : b\r\n\r\n', 'whitespace before colon in trailer field'],
    ['empty name', '0\r\n: b\r\n\r\n', 'invalid trailer field'],
    ['non-token name byte', '0\r\nX(A): b\r\n\r\n', 'invalid trailer field name'],
    ['no colon', '0\r\nX-A\r\n\r\n', 'invalid trailer field name'],
    ['NUL in a dropped field\'s value', '0\r\nContent-Length: 5\x00\r\n\r\n', 'invalid byte in trailer field'],
    ['bare LF in a value', '0\r\nX: a\nY: b\r\n\r\n', 'invalid byte in trailer field'],
    ['bare CR in a value', '0\r\nX: a\rb\r\n\r\n', 'bare CR in trailer section'],
  ]
  for (const [name, text, error] of TRAILER_ERRORS) {
    it(`rejects: ${name}`, () => {
      const r = reencodeAllWays(bytes(text))
      assert.deepEqual([r.outcome, r.error], ['error', error])
    })
  }

  it('dropped lines count toward the trailer limit too', () => {
    const text = '0\r\nContent-Type: ' + 'a'.repeat(100) + '\r\n\r\n'
    assert.equal(reencode(bytes(text), wholeCuts(), 64).error, 'trailer section too large')
  })
})

describe('ChunkedScanner: re-encoding properties (fast-check)', () => {
  const trailerName = fc.oneof(
    { weight: 3, arbitrary: token(1, 16) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...DROPPED), fc.boolean()).map(([n, up]) => up ? n.toUpperCase() : n.toLowerCase()) }
  )
  const bodyArb = fc.tuple(
    fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 120 }), fc.boolean(), fc.constantFrom('', '', '0', '000'), chunkExtArb(true)), { maxLength: 8 }),
    chunkExtArb(true),
    fc.array(fc.tuple(trailerName, fieldValue(20)), { maxLength: 4 })
  ).map(([chunks, lastExt, trailers]) => {
    let text = ''
    for (const [data, upper, zeros, ext] of chunks) {
      const hex = data.length.toString(16)
      text += zeros + (upper ? hex.toUpperCase() : hex) + ext + '\r\n' + Buffer.from(data).toString('latin1') + '\r\n'
    }
    text += '0' + lastExt + '\r\n'
    for (const [name, [raw]] of trailers) text += `${name}:${raw}\r\n`
    return text + '\r\n'
  })

  it('random bodies cut at random points decode to the same data and trailers (300 runs)', () => {
    const scanner = new ChunkedScanner(DEFAULT_TRAILER_BYTES) // one for every run: reset() must really reset
    fc.assert(fc.property(bodyArb, partitionsArb, (text, partitions) => {
      const body = bytes(text)
      const want = naiveDecode(text)
      for (const cuts of [wholeCuts(), byteCuts(body.length), ...partitions.map((f) => cutsFrom(f, body.length))]) {
        const r = reencode(body, cuts, DEFAULT_TRAILER_BYTES, scanner)
        assert.equal(r.outcome, 'done', r.error)
        assert.equal(r.end, body.length)
        assert.equal(r.data, want.data)
        assert.equal(r.dechunked, want.data)
        assert.equal(r.kept, want.kept)
        assert.deepEqual(strictDecode(r.encoded), { data: want.data, kept: want.kept, complete: true })
      }
    }), { numRuns: 300, seed: 20_240_614 })
  })
})
