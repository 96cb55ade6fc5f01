/**
 * Parser micro-benchmarks: request heads (small and 40 headers), a response
 * head, and chunked framing, each next to a naive string-splitting parser and,
 * for heads, Node's own llhttp (via node:_http_common's HTTPParser).
 */
import type { MicroSuite } from './types'
import { HeadParser, KIND_REQUEST, KIND_RESPONSE } from '../../src/http/head-parser'
import { ChunkedScanner } from '../../src/http/chunked'

const limits = { maxHeaderBytes: 16384, maxHeaderCount: 100, maxRequestTargetBytes: 8192 }

const small = Buffer.from('GET /api/v1/users/42?fields=name,email HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench/1.0\r\n' +
  'Accept: application/json\r\nAccept-Encoding: gzip, br\r\nConnection: keep-alive\r\n\r\n', 'latin1')
const many = Buffer.from('GET /dashboard HTTP/1.1\r\nHost: example.com\r\n' +
  Array.from({ length: 39 }, (_, i) => `X-Header-${i}: value-${i}-${'v'.repeat(20)}\r\n`).join('') + '\r\n', 'latin1')
const response = Buffer.from('HTTP/1.1 200 OK\r\nDate: Sat, 21 Nov 2026 06:00:00 GMT\r\nContent-Type: application/json\r\n' +
  'Content-Length: 1234\r\nCache-Control: max-age=60\r\nETag: "abc123"\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n', 'latin1')
const chunked = Buffer.from(Array.from({ length: 32 }, (_, i) => `200${i % 2 === 0 ? ';ext=1' : ''}\r\n${'x'.repeat(0x200)}\r\n`).join('') + '0\r\n\r\n', 'latin1')

const request = new HeadParser(KIND_REQUEST, limits)
const responseParser = new HeadParser(KIND_RESPONSE, limits)
const scanner = new ChunkedScanner(16384)

function ours (p: HeadParser, buf: Buffer): void {
  p.reset()
  if (p.execute(buf, 0, buf.length) !== buf.length) throw new Error('parse failed')
}

/** What a quick hand-written parser does: decode to a string, split lines and fields. */
function naiveHead (buf: Buffer): void {
  const text = buf.toString('latin1')
  const lines = text.slice(0, text.indexOf('\r\n\r\n')).split('\r\n')
  const start = lines[0].split(' ')
  const headers: Record<string, string> = {}
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i].indexOf(':')
    headers[lines[i].slice(0, c).toLowerCase()] = lines[i].slice(c + 1).trim()
  }
  if (start.length < 2 || (headers.host === undefined && headers.date === undefined)) throw new Error('naive parse failed')
}

function naiveChunked (buf: Buffer): void {
  const text = buf.toString('latin1')
  let pos = 0
  for (;;) {
    const lineEnd = text.indexOf('\r\n', pos)
    const size = parseInt(text.slice(pos, lineEnd).split(';')[0], 16)
    pos = lineEnd + 2
    if (size === 0) break
    pos += size + 2
  }
}

// llhttp, as Node's http server uses it (internal, but stable across Node 20)
interface LlhttpParser { initialize (type: number, resource: object): void, execute (buf: Buffer): number | Error, finish (): void, [k: number]: unknown }
interface LlhttpCtor { new (): LlhttpParser, REQUEST: number, RESPONSE: number, kOnHeadersComplete: number }
let llhttp: { parser: LlhttpParser, ctor: LlhttpCtor } | null = null
try {
  const { HTTPParser } = require('node:_http_common') as { HTTPParser: LlhttpCtor }
  const parser = new HTTPParser()
  parser[HTTPParser.kOnHeadersComplete] = () => 0
  llhttp = { parser, ctor: HTTPParser }
} catch { /* not available: the llhttp cases are left out */ }

function llhttpHead (buf: Buffer, kind: 'REQUEST' | 'RESPONSE'): void {
  const l = llhttp as { parser: LlhttpParser, ctor: LlhttpCtor }
  l.parser.initialize(l.ctor[kind], {})
  const r = l.parser.execute(buf)
  if (r instanceof Error) throw r
}

function headCases (buf: Buffer, p: HeadParser, kind: 'REQUEST' | 'RESPONSE'): MicroSuite['cases'] {
  const cases: MicroSuite['cases'] = [
    { name: 'switchyard HeadParser', fn: () => ours(p, buf) },
    { name: 'naive toString + split', fn: () => naiveHead(buf) },
  ]
  if (llhttp !== null) cases.push({ name: "llhttp (node's own parser)", fn: () => llhttpHead(buf, kind) })
  return cases
}

export const suites: MicroSuite[] = [
  { name: 'request head: small (5 fields)', cases: headCases(small, request, 'REQUEST') },
  { name: 'request head: 40 fields', cases: headCases(many, request, 'REQUEST') },
  { name: 'response head', cases: headCases(response, responseParser, 'RESPONSE') },
  {
    name: 'chunked body: 32 × 512 B chunks',
    cases: [
      { name: 'switchyard ChunkedScanner (validating)', fn: () => { scanner.reset(); if (scanner.execute(chunked, 0, chunked.length) !== chunked.length) throw new Error('chunked') } },
      { name: 'naive toString + indexOf + parseInt', fn: () => naiveChunked(chunked) },
    ],
  },
]
