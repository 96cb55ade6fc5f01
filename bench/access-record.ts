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

/**
 * Shaped as the request path's record is (a class instance with every field its own, as
 * ClientConnection): an object literal with a getter is kept in dictionary mode, and its absent
 * optional fields (retries, route, pool, proto) made every load of them a generic lookup, which the
 * real path never pays.
 */
class BenchRecord implements AccessRecord {
  readonly clientIp = '203.0.113.7'
  readonly method = 'GET'
  readonly parser = parser
  readonly status = 200
  readonly entry = { address: '10.0.0.12:8080' } as unknown as UpstreamEntry
  readonly bytesOut = 1234
  readonly bytesIn = head.length
  readonly startedAt = performance.now() - 1.234
  readonly upstreamMs = 0.987
  readonly requestId = 'a1b2c3d4-000042'
  readonly retries: number | undefined = undefined
  readonly route: { readonly name: string } | null = null
  readonly pool: { readonly name: string } | null = null
  readonly proto: string | undefined = undefined
  readonly flag = '-'
  get target (): string { return parser.target() }
}

export const record: AccessRecord = new BenchRecord()
