/**
 * The route matcher on a 200-route table (100 hosts with one host route and
 * one host + pathPrefix route each), per request: switchyard's index (one map
 * lookup on the host, then that host's few candidates) next to a naive linear
 * scan of every route in order (what a table without an index costs, and the
 * matcher's own oracle in the tests). Requests are parsed once; the cases
 * measure only matching, the normalised path included.
 */
import { HeadParser, KIND_REQUEST } from '../../src/http/head-parser'
import { resolveConfig } from '../../src/config/load'
import { SharedState } from '../../src/shared/state'
import { buildUpstreamTable } from '../../src/shared/upstreams'
import { buildPools } from '../../src/routing/pools'
import { compileRouter, type Router, type RouteLookup } from '../../src/routing/router'
import type { MicroSuite } from './types'

const HOSTS = 100
const routes: unknown[] = []
for (let h = 0; h < HOSTS; h++) {
  routes.push({ name: `h${h}-api`, match: { host: [`svc${h}.example.com`], pathPrefix: '/api' }, pool: 'default', stripPathPrefix: true })
  routes.push({ name: `h${h}`, match: { host: [`svc${h}.example.com`] }, pool: 'default' })
}
const config = resolveConfig({ listen: '127.0.0.1:0', upstreams: [{ address: '127.0.0.1:9001' }], routes })
const state = SharedState.create(0)
const router = compileRouter(config, buildPools(config, buildUpstreamTable(config, state, null), state, null), state) as Router

function parsed (host: string, target: string): HeadParser {
  const p = new HeadParser(KIND_REQUEST, { maxHeaderBytes: 16384, maxHeaderCount: 100, maxRequestTargetBytes: 8192 })
  const buf = Buffer.from(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n`, 'latin1')
  p.execute(buf, 0, buf.length)
  return p
}

// a spread of hosts (late ones hurt a scan most), with and without the API prefix, and an unknown host
const requests: HeadParser[] = []
for (let i = 0; i < 16; i++) {
  const h = (i * 37) % HOSTS
  requests.push(parsed(`svc${h}.example.com`, i % 2 === 0 ? `/api/users/${i}?page=2` : `/static/app${i}.js`))
}
requests[15] = parsed('unknown.example.net', '/x')

const out: RouteLookup = { route: null, path: '' }
let cursor = 0
/** Written by every case so the JIT cannot drop the work. */
export let sink = 0

export const suites: MicroSuite[] = [
  {
    name: 'route match, 200 routes over 100 hosts',
    cases: [
      {
        name: 'host index (switchyard)',
        fn: () => {
          router.match(requests[cursor++ & 15], out)
          sink += out.route === null ? 0 : out.route.index
        },
      },
      {
        name: 'naive linear scan',
        fn: () => {
          router.matchByScan(requests[cursor++ & 15], out)
          sink += out.route === null ? 0 : out.route.index
        },
      },
    ],
  },
]
