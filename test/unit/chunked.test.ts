/**
 * ChunkedScanner (RFC 9112 §7.1): valid bodies with extensions and trailers,
 * every malformed framing, each fed whole, byte by byte and split in two at
 * every position (chunkedSameAllWays), which must all agree.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { ChunkedScanner, CHUNKED_ERROR, CHUNKED_MORE } from '../../src/http/chunked'
import { chunkedSameAllWays, feedChunked, bytes, singleCuts, deepEqual } from './parser-cases'

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
