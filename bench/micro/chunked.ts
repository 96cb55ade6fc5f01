/**
 * Chunked re-encoding micro-benchmarks: ChunkedScanner.execute() + encode() (validate,
 * record the data spans, one allocation and copy into canonical framing) next to the
 * validating scan alone (what forwarding the peer's bytes verbatim cost) and a naive
 * decode/re-encode built from strings, parseInt and Buffer.concat.
 */
import type { MicroSuite } from './types'
import { ChunkedScanner } from '../../src/http/chunked'

const sixteenKiB = Buffer.from(Array.from({ length: 32 }, (_, i) => `0200${i % 2 === 0 ? ';ext=1' : ''}\r\n${'x'.repeat(0x200)}\r\n`).join('') +
  '0\r\n\r\n', 'latin1')
const tiny = Buffer.from('1\r\nx\r\n'.repeat(65_536 / 6 | 0) + '0\r\n\r\n', 'latin1')
const withTrailers = Buffer.from('400\r\n' + 'y'.repeat(0x400) + '\r\n0\r\nX-Checksum: abc123\r\nContent-Length: 5\r\n' +
  'Server-Timing: db;dur=53\r\nHost: evil.example\r\n\r\n', 'latin1')

const scanner = new ChunkedScanner(16384)

function scanOnly (buf: Buffer): void {
  scanner.reset()
  if (scanner.execute(buf, 0, buf.length) !== buf.length) throw new Error('chunked')
}

function scanEncode (buf: Buffer, dechunk: boolean): void {
  scanner.reset()
  if (scanner.execute(buf, 0, buf.length) !== buf.length) throw new Error('chunked')
  if (scanner.encode(buf, dechunk) === null) throw new Error('encode')
}

const reused = Buffer.allocUnsafe(70_000)

/** The copy without the allocation: how much of encode() is Buffer.allocUnsafe of a fresh 16-64 KiB buffer. */
function scanEncodeInto (buf: Buffer): void {
  scanner.reset()
  if (scanner.execute(buf, 0, buf.length) !== buf.length) throw new Error('chunked')
  if (scanner.encodeInto(buf, reused, 0, false) !== scanner.encodedLength(false)) throw new Error('encodeInto')
}

const DROP = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'trailer', 'te'])

/** What a quick hand-written re-encoder does: strings for the framing, a list of slices, concat. */
function naiveReencode (buf: Buffer): void {
  const text = buf.toString('latin1')
  const parts: Buffer[] = []
  let total = 0
  let pos = 0
  for (;;) {
    const lineEnd = text.indexOf('\r\n', pos)
    const size = parseInt(text.slice(pos, lineEnd).split(';')[0], 16)
    pos = lineEnd + 2
    if (size === 0) break
    parts.push(buf.subarray(pos, pos + size))
    total += size
    pos += size + 2
  }
  let trailers = ''
  for (const line of text.slice(pos, text.indexOf('\r\n\r\n', pos - 2)).split('\r\n')) {
    const c = line.indexOf(':')
    if (c > 0 && !DROP.has(line.slice(0, c).toLowerCase())) trailers += `${line.slice(0, c)}: ${line.slice(c + 1).trim()}\r\n`
  }
  const out = Buffer.concat([Buffer.from(`${total.toString(16)}\r\n`), ...parts, Buffer.from(`\r\n0\r\n${trailers}\r\n`)])
  if (out.length === 0) throw new Error('naive')
}

function cases (buf: Buffer): MicroSuite['cases'] {
  return [
    { name: 'switchyard scan + encode (canonical chunked)', fn: () => scanEncode(buf, false) },
    { name: 'switchyard scan + encode (de-chunked, HTTP/1.0)', fn: () => scanEncode(buf, true) },
    { name: 'switchyard scan + encodeInto (reused buffer, no allocation)', fn: () => scanEncodeInto(buf) },
    { name: 'switchyard scan only (verbatim forwarding, before)', fn: () => scanOnly(buf) },
    { name: 'naive toString + parseInt + Buffer.concat', fn: () => naiveReencode(buf) },
  ]
}

export const suites: MicroSuite[] = [
  { name: 'chunked re-encode: 32 × 512 B chunks, 16 KiB', cases: cases(sixteenKiB) },
  { name: 'chunked re-encode: 10 922 × 1 B chunks (one 64 KiB read)', cases: cases(tiny) },
  { name: 'chunked re-encode: 1 KiB + 4 trailers (2 dropped)', cases: cases(withTrailers) },
]
