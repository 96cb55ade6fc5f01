/**
 * A typical request's access-log record (a parsed head with Host, User-Agent, Referer and a
 * query), shared by bench/micro/access-log.ts and bench/log-cost.ts.
 */
import { performance } from 'node:perf_hooks'
import { HeadParser, KIND_REQUEST } from '../src/http/head-parser'
import type { AccessRecord } from '../src/proxy/access-log'
import type { UpstreamEntry } from '../src/shared/state'

const head = Buffer.from('GET /api/v1/users/42?fields=name,email HTTP/1.1\r\nHost: shop.example.com\r\n' +
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n' +
  'Accept: application/json\r\nReferer: https://shop.example.com/basket\r\nConnection: keep-alive\r\n\r\n', 'latin1')
const parser = new HeadParser(KIND_REQUEST, { maxHeaderBytes: 16384, maxHeaderCount: 100, maxRequestTargetBytes: 8192 })
if (parser.execute(head, 0, head.length) !== head.length) throw new Error('bench head does not parse')

export const record: AccessRecord = {
  clientIp: '203.0.113.7',
  method: 'GET',
  get target () { return parser.target() },
  parser,
  status: 200,
  entry: { address: '10.0.0.12:8080' } as unknown as UpstreamEntry,
  bytesOut: 1234,
  bytesIn: head.length,
  startedAt: performance.now() - 1.234,
  upstreamMs: 0.987,
  requestId: 'a1b2c3d4-000042',
  flag: '-',
}
