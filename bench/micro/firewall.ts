/**
 * Firewall.evaluate() with five configured rules (method, path prefix, path
 * exact, CIDR, body size) plus the built-in set, on ordinary requests and on
 * attack requests, each next to the naive way of writing it: a WHATWG URL and
 * decodeURIComponent() loops per request, lower-cased copies of path and
 * query, one regex per signature, CidrSet.has() (which parses the address
 * into a fresh array every call). The gap is what "scan once, decode only
 * when there is a '%', skip the regexes when no byte could match" buys.
 */
import { CidrSet } from '../../src/net/cidr'
import { SharedState } from '../../src/shared/state'
import type { FirewallConfig } from '../../src/config/types'
import { createFirewall, type FirewallRequest } from '../../src/firewall/index'
import type { MicroCase, MicroSuite } from './types'

const config: FirewallConfig = {
  builtin: true,
  rules: [
    { action: 'deny', name: 'no-delete', methods: ['DELETE'] },
    { action: 'deny', name: 'admin', path: { prefix: '/admin' } },
    { action: 'allow', name: 'health', path: { exact: '/healthz' } },
    { action: 'deny', name: 'bad-nets', clientCidr: ['10.0.0.0/8', '2001:db8::/32'] },
    { action: 'deny', name: 'big-bodies', maxBodyBytes: 1_000_000 },
  ],
}

const ordinaryTargets = [
  '/api/v1/users/42',
  '/search?q=hello+world&page=2',
  '/static/app.3f2a9c.js?v=3',
  '/products?sort=asc&filter=red&size=m',
  '/healthz',
  "/people?name=O'Brien",
  '/search?q=caf%C3%A9+cr%C3%A8me',
  '/events?from=2024-01-31&to=2024-02-29',
]

const attackTargets = [
  '/%2e%2e%2f%2e%2e%2fetc/passwd',
  '/static/%252e%252e%252fetc/passwd',
  '/download?file=..%2f..%2fetc%2fpasswd',
  "/item?id=1'+or+1=1--",
  '/item?id=1%20UNION%20SELECT%20password%20FROM%20users',
  '/search?q=%3Cscript%3Ealert(1)%3C/script%3E',
  '/go?url=javascript:alert(document.cookie)',
  '/file.php%00.jpg',
]

const clientIps = ['192.0.2.10', '::ffff:198.51.100.7', '2001:db9::5', '203.0.113.40']

class BenchRequest implements FirewallRequest {
  method = 'GET'
  target = '/'
  clientIp = ''
  bodyLength = 0
  header (_lowerCaseName: string): string | null { return null }
}

const firewall = createFirewall(config, SharedState.create(0), { warn () {} })
const req = new BenchRequest()
let cursor = 0
/** Written by every case so the JIT cannot drop the work. */
export let sink = 0

function next (targets: readonly string[]): void {
  const i = cursor++
  req.target = targets[i & (targets.length - 1)]
  req.clientIp = clientIps[i & 3]
}

// ---- naive alternative ----------------------------------------------------------

const naiveNets = new CidrSet(['10.0.0.0/8', '2001:db8::/32'])
const naiveSignatures = {
  traversal: [/(?:^|[/\\])\.\.(?:[/\\]|$)/],
  nul: [/\0/],
  sql: [/'\s*(?:or|and)\s+.{0,40}?[=<>]/, /'\s*(?:--|#)/, /\b(?:or|and)\s+(\d+)\s*=\s*\1\b/, /union(?:\s+all)?\s*\(?\s*select/, /;\s*(?:drop|truncate|alter)\s+table/, /(?:sleep|benchmark)\(/],
  script: [/<script\b/, /<iframe\b/, /javascript:/, /\son(?:error|load|mouseover|focus)\s*=/],
}

function decodeFully (text: string, plusAsSpace: boolean): string {
  if (plusAsSpace) text = text.replace(/\+/g, ' ')
  for (let round = 0; round < 4; round++) {
    let decoded: string
    try { decoded = decodeURIComponent(text) } catch { break }
    if (decoded === text) break
    text = decoded
  }
  return text
}

function anyMatch (patterns: RegExp[], text: string): boolean {
  return patterns.some((p) => p.test(text))
}

/** Same decisions for these inputs, written the obvious way. */
function naiveEvaluate (request: FirewallRequest): number {
  const url = new URL(request.target, 'http://localhost')
  const path = decodeFully(url.pathname, false)
  const query = decodeFully(url.search.slice(1), true).toLowerCase()
  if (['DELETE'].includes(request.method.toUpperCase())) return 0
  if (path.startsWith('/admin')) return 1
  if (path === '/healthz') return -1
  if (naiveNets.has(request.clientIp)) return 3
  if (request.bodyLength > 1_000_000) return 4
  const lowerPath = path.toLowerCase()
  if (anyMatch(naiveSignatures.traversal, request.target) || anyMatch(naiveSignatures.traversal, lowerPath) || query.includes('../')) return 5
  if (anyMatch(naiveSignatures.nul, lowerPath) || anyMatch(naiveSignatures.nul, query)) return 6
  if (anyMatch(naiveSignatures.sql, query)) return 7
  if (anyMatch(naiveSignatures.script, lowerPath) || anyMatch(naiveSignatures.script, query)) return 8
  return -1
}

function cases (targets: readonly string[]): MicroCase[] {
  return [
    { name: 'switchyard evaluate()', fn: () => { next(targets); sink += firewall.evaluate(req) } },
    { name: 'naive: URL + decodeURIComponent + regex list', fn: () => { next(targets); sink += naiveEvaluate(req) } },
  ]
}

export const suites: MicroSuite[] = [
  { name: 'firewall: ordinary requests (5 rules + built-in set)', cases: cases(ordinaryTargets) },
  { name: 'firewall: attack requests (encoded evasions)', cases: cases(attackTargets) },
]
