/**
 * Sticky route() (values precomputed at table build, id lookup, constant-time
 * mac compare, no allocation) next to the naive verifier that splits the
 * Cookie header and recomputes the HMAC for every request.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { UpstreamEntry } from '../../src/shared/state'
import { createSticky, findCookie } from '../../src/sticky/index'
import type { MicroSuite } from './types'

const SECRET = 'bench-secret-bench-secret'
const table: UpstreamEntry[] = Array.from({ length: 8 }, (_, i) => ({
  slot: i, index: i, pool: 'default', poolSlot: 0, address: `10.0.0.${i + 1}:8080`, host: `10.0.0.${i + 1}`, port: 8080, weight: 1, id: `u${i}`,
}))
const sticky = createSticky({ cookie: 'swy', secret: SECRET }, table)
const value = /swy=([^;]+)/.exec(sticky.setCookieLine(5))?.[1] ?? ''
const header = `_ga=GA1.2.1234567890.1234567890; theme=dark; swy=${value}; session=abcdef0123456789`
const forged = header.replace(value, value.slice(0, -1) + (value.endsWith('A') ? 'B' : 'A'))
/** Written by every case so the JIT cannot drop the call. */
export let sink = 0

/** What a first version would do: parse with split, then HMAC the id and compare. */
function naiveRoute (cookieHeader: string): number {
  let cookie: string | undefined
  for (const pair of cookieHeader.split(';')) {
    const [name, ...rest] = pair.trim().split('=')
    if (name === 'swy') { cookie = rest.join('='); break }
  }
  if (cookie === undefined) return -1
  const [id, mac] = cookie.split('.')
  if (id === undefined || mac === undefined) return -1
  const expected = createHmac('sha256', SECRET).update('switchyard sticky mac\0' + id).digest().subarray(0, 12)
  const given = Buffer.from(mac, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return -1
  for (let i = 0; i < table.length; i++) {
    const idOf = createHmac('sha256', SECRET).update('switchyard sticky id\0' + table[i].address).digest().subarray(0, 9).toString('base64url')
    if (idOf === id) return i
  }
  return -1
}

export const suites: MicroSuite[] = [
  {
    name: 'sticky route(): cookie among 3 others, 8 upstreams',
    cases: [
      { name: 'route() precomputed', fn: () => { sink += sticky.route(header) } },
      { name: 'route() forged mac', fn: () => { sink += sticky.route(forged) } },
      { name: 'findCookie() alone', fn: () => { sink += findCookie(header, 'swy')?.length ?? 0 } },
      { name: 'naive split + HMAC per request', fn: () => { sink += naiveRoute(header) } },
    ],
  },
]
