/**
 * The route table, compiled once per config load (and per thread), and the
 * route phase's matcher.
 *
 * Routes are evaluated in order and the first match wins. To avoid scanning
 * every route, the table is indexed by host:
 *
 *   exact host  -> its routes, merged in order with the wildcard routes that
 *                  cover it and the routes without a host condition
 *   *.suffix    -> the wildcard routes of that suffix, merged with the routes
 *                  without a host condition
 *   any other   -> the routes without a host condition
 *
 * so a request costs one map lookup (two for a host only a wildcard knows)
 * plus the path, method and header conditions of its host's candidates.
 * Hosts are compared lower case, without port and trailing dot; a request
 * without a host (HTTP/1.0) only matches routes without a host condition.
 * `*.example.com` covers exactly one more label: a.example.com, not
 * example.com nor a.b.example.com.
 *
 * Paths are matched after the firewall's normalisation (src/firewall/decode.ts:
 * percent-decoding, dot segments removed, path parameters dropped), so
 * /api/../admin is /admin to routes as it is to firewall rules. A pathPrefix
 * matches on segment boundaries: /api matches /api, /api/x and /api?q, not
 * /apix.
 */
import type { Config, RouteConfig } from '../config/types'
import type { SharedState } from '../shared/state'
import type { HeadParser } from '../http/head-parser'
import type { RateLimitHook } from '../proxy/context'
import type { PoolRuntime, PoolSet } from './pools'
import { TargetDecoder } from '../firewall/decode'
import { P_DECODE, P_NORMALISE, pathStartOf, scanPath } from '../firewall/target'
import { comparableHost } from '../http/field-syntax'
import { createRateLimiter, type ScopedRateLimitConfig } from '../ratelimit/index'
import { schemaDefault } from '../config/defaults'
import { HeaderEdits, Template } from './templates'
import { LocalAnswer } from './local-answer'

type HeaderCondition =
  | { name: string, kind: 'equals', value: string }
  | { name: string, kind: 'regex', regex: RegExp }
  | { name: string, kind: 'present', present: boolean }

/** One route, compiled: its conditions and its actions, as the request path reads them. */
export class CompiledRoute {
  /** Position in the table: the index of its shared hit counter. */
  readonly index: number
  /** `name`, or `#index` when it has none (the metrics label). */
  readonly name: string
  // ---- conditions (null: none) ----
  readonly hosts: readonly string[] | null
  readonly prefix: string | null
  readonly exactPath: string | null
  readonly pathRegex: RegExp | null
  readonly methods: readonly string[] | null
  readonly headers: readonly HeaderCondition[] | null
  /** Some condition reads the path. */
  readonly needsPath: boolean
  // ---- actions ----
  /** Where it goes (null: answered locally, or pool "default"). */
  readonly pool: PoolRuntime | null
  /** Length of the prefix stripped from the path before forwarding (0: none). */
  readonly stripLength: number
  readonly rewrite: { regex: RegExp, replace: string } | null
  readonly setHost: string | null
  readonly requestEdits: HeaderEdits | null
  readonly responseEdits: HeaderEdits | null
  /** Some action changes the forwarded request head (target, Host, fields). */
  readonly editsRequest: boolean
  /** A redirect or a fixed response, answered without an upstream. */
  readonly local: LocalAnswer | null
  readonly limiter: RateLimitHook | null
  readonly cache: boolean
  readonly firewall: boolean
  /** Overrides of the top level; -1 = as the top level says. */
  readonly responseMs: number
  readonly upstreamIdleMs: number
  readonly tunnelIdleMs: number
  readonly retries: number
  readonly maxBodyBytes: number

  constructor (index: number, route: RouteConfig, pools: PoolSet, state: SharedState, globalRateLimit: Config['rateLimit']) {
    const m = route.match
    this.index = index
    this.name = route.name ?? `#${index}`
    this.hosts = m.host !== undefined ? m.host.map((h) => comparableHost(h)) : null
    this.prefix = m.pathPrefix ?? null
    this.exactPath = m.path ?? null
    this.pathRegex = m.pathRegex !== undefined ? new RegExp(m.pathRegex) : null
    this.methods = m.methods !== undefined ? m.methods.map((x) => x.toUpperCase()) : null
    this.headers = m.headers !== undefined ? Object.entries(m.headers).map(([name, c]) => headerCondition(name.toLowerCase(), c)) : null
    this.needsPath = this.prefix !== null || this.exactPath !== null || this.pathRegex !== null
    this.pool = route.pool !== undefined ? pools.byName.get(route.pool) ?? null : null
    this.stripLength = route.stripPathPrefix === true && this.prefix !== null ? this.prefix.replace(/\/+$/, '').length : 0
    this.rewrite = route.rewritePath !== undefined ? { regex: new RegExp(route.rewritePath.regex), replace: route.rewritePath.replace } : null
    this.setHost = route.setHost ?? null
    this.requestEdits = route.requestHeaders !== undefined ? new HeaderEdits(route.requestHeaders) : null
    this.responseEdits = route.responseHeaders !== undefined ? new HeaderEdits(route.responseHeaders) : null
    this.editsRequest = this.stripLength > 0 || this.rewrite !== null || this.setHost !== null || this.requestEdits !== null
    this.local = route.redirect !== undefined
      ? LocalAnswer.redirect(route.redirect.status ?? 302, new Template(route.redirect.location))
      : route.respond !== undefined ? LocalAnswer.fixed(route.respond.status, route.respond.body ?? '', route.respond.contentType ?? 'text/plain; charset=utf-8') : null
    this.limiter = route.rateLimit !== undefined && state.rateTableSlots > 0 ? createRateLimiter(routeLimit(route, this.name, state, globalRateLimit), state) : null
    // The cache keys a response by its URL, not by the route that fetched it: a route chosen by a
    // header (a canary cookie, a beta flag) must not be answered with what another route's pool
    // stored for the same URL, nor store its own for the others, so such a route skips the cache.
    this.cache = route.cache !== false && m.headers === undefined
    this.firewall = route.firewall !== false
    this.responseMs = route.timeouts?.responseMs ?? -1
    this.upstreamIdleMs = route.timeouts?.upstreamIdleMs ?? -1
    this.tunnelIdleMs = route.timeouts?.tunnelIdleMs ?? -1
    this.retries = route.retries ?? -1
    this.maxBodyBytes = route.maxBodyBytes ?? -1
  }

  /** Do the conditions other than host hold? (`path` is the normalised path, '' when not computed.) */
  matchesRequest (method: string, path: string, p: HeadParser): boolean {
    const methods = this.methods
    if (methods !== null && !methods.includes(method) && !methods.includes(method.toUpperCase())) return false
    if (this.exactPath !== null && path !== this.exactPath) return false
    const prefix = this.prefix
    if (prefix !== null && !segmentPrefix(path, prefix)) return false
    if (this.pathRegex !== null && !this.pathRegex.test(path)) return false
    const headers = this.headers
    if (headers !== null) {
      for (let i = 0; i < headers.length; i++) if (!headerHolds(headers[i], p.header(headers[i].name))) return false
    }
    return true
  }

  /** Does the host condition hold for `host` (comparable form)? */
  matchesHost (host: string): boolean {
    const hosts = this.hosts
    if (hosts === null) return true
    for (const h of hosts) {
      if (h.startsWith('*.') ? wildcardCovers(h, host) : h === host) return true
    }
    return false
  }

  /**
   * The path and query sent upstream when the route strips or rewrites
   * (null: the target goes as received). Works on the normalised path and
   * percent-encodes what is not a path character, so the result is always a
   * valid origin-form target (RFC 9112 §3.2.1); an empty path becomes '/'.
   */
  forwardTarget (path: string, rawTarget: string): string | null {
    if (this.stripLength === 0 && this.rewrite === null) return null
    let out = path
    if (this.stripLength > 0) out = out.slice(this.stripLength)
    if (this.rewrite !== null) out = out.replace(this.rewrite.regex, this.rewrite.replace)
    out = encodePath(out)
    if (out.charCodeAt(0) !== 0x2f) out = '/' + out
    const q = rawTarget.indexOf('?', pathStartOf(rawTarget))
    return q === -1 ? out : out + rawTarget.slice(q)
  }
}

function routeLimit (route: RouteConfig, name: string, state: SharedState, global: Config['rateLimit']): ScopedRateLimitConfig {
  const rl = route.rateLimit as NonNullable<RouteConfig['rateLimit']>
  return {
    algorithm: rl.algorithm ?? 'fixed-window',
    maxRequests: rl.maxRequests,
    windowMs: rl.windowMs ?? schemaDefault('rateLimit.windowMs') as number,
    burst: rl.burst,
    tableSize: state.rateTableSlots,
    trustProxy: global?.trustProxy ?? [],
    scope: 'route:' + name,
  }
}

function headerCondition (name: string, c: NonNullable<RouteConfig['match']['headers']>[string]): HeaderCondition {
  if (typeof c === 'string') return { name, kind: 'equals', value: c }
  if ('regex' in c) return { name, kind: 'regex', regex: new RegExp(c.regex) }
  return { name, kind: 'present', present: c.present }
}

function headerHolds (c: HeaderCondition, value: string | null): boolean {
  switch (c.kind) {
    case 'equals': return value === c.value
    case 'regex': return value !== null && c.regex.test(value)
    default: return (value !== null) === c.present
  }
}

/** `path` is `prefix` or continues it at a segment boundary ('/api' covers '/api' and '/api/x', not '/apix'). */
export function segmentPrefix (path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false
  return path.length === prefix.length || prefix.charCodeAt(prefix.length - 1) === 0x2f || path.charCodeAt(prefix.length) === 0x2f
}

/** `*.example.com` covers `a.example.com` (exactly one more label). */
function wildcardCovers (pattern: string, host: string): boolean {
  const suffix = pattern.length - 1 // '.example.com'
  if (host.length <= suffix || !host.endsWith(pattern.slice(1))) return false
  const label = host.length - suffix
  return host.lastIndexOf('.', label - 1) === -1
}

/** Characters kept as they are in a path (RFC 3986 §3.3 pchar and '/'); everything else is %XX of its UTF-8 bytes. */
const PATH_CHAR = (() => {
  const t = new Uint8Array(128)
  for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/") t[c.charCodeAt(0)] = 1
  return t
})()

export function encodePath (path: string): string {
  let i = 0
  while (i < path.length) { const c = path.charCodeAt(i); if (c >= 128 || PATH_CHAR[c] === 0) break; i++ }
  if (i === path.length) return path
  let out = path.slice(0, i)
  for (const byte of Buffer.from(path.slice(i), 'utf8')) {
    out += byte < 128 && PATH_CHAR[byte] === 1 ? String.fromCharCode(byte) : '%' + (byte < 16 ? '0' : '') + byte.toString(16).toUpperCase()
  }
  return out
}

/** What the route phase needs of a request (ClientConnection's parser). */
export interface RouteLookup {
  route: CompiledRoute | null
  /** The normalised path ('' when no candidate needed it). */
  path: string
}

export class Router {
  readonly routes: readonly CompiledRoute[]
  private readonly byHost: Map<string, readonly CompiledRoute[]>
  private readonly byWildcard: Map<string, readonly CompiledRoute[]>
  private readonly anyHost: readonly CompiledRoute[]

  constructor (routes: CompiledRoute[]) {
    this.routes = routes
    this.anyHost = routes.filter((r) => r.hosts === null)
    const wildcardSuffixes = new Set<string>()
    const exactHosts = new Set<string>()
    for (const r of routes) for (const h of r.hosts ?? []) (h.startsWith('*.') ? wildcardSuffixes : exactHosts).add(h.startsWith('*.') ? h.slice(2) : h)
    this.byWildcard = new Map()
    for (const suffix of wildcardSuffixes) {
      this.byWildcard.set(suffix, routes.filter((r) => r.hosts === null || r.hosts.includes('*.' + suffix)))
    }
    this.byHost = new Map()
    for (const host of exactHosts) this.byHost.set(host, routes.filter((r) => r.matchesHost(host)))
  }

  /** The first route that matches, with the normalised path it saw. Never throws: a bad host or path matches less. */
  match (p: HeadParser, out: RouteLookup): void {
    const hostName = p.hostName()
    const host = hostName === '' ? '' : comparableHost(hostName)
    let candidates = this.anyHost
    if (host !== '') {
      const exact = this.byHost.get(host)
      if (exact !== undefined) {
        candidates = exact
      } else if (this.byWildcard.size > 0) {
        const dot = host.indexOf('.')
        if (dot > 0) candidates = this.byWildcard.get(host.slice(dot + 1)) ?? this.anyHost
      }
    }
    out.route = null
    out.path = ''
    const method = p.method
    for (let i = 0; i < candidates.length; i++) {
      const r = candidates[i]
      if (r.needsPath && out.path === '') out.path = normalisedPath(p)
      if (r.matchesRequest(method, out.path, p)) { out.route = r; return }
    }
  }

  /** The same answer as match(), by testing every route in order (the benchmark's baseline, and the tests' oracle). */
  matchByScan (p: HeadParser, out: RouteLookup): void {
    const hostName = p.hostName()
    const host = hostName === '' ? '' : comparableHost(hostName)
    out.route = null
    out.path = normalisedPath(p)
    for (const r of this.routes) {
      if (r.matchesHost(host) && r.matchesRequest(p.method, out.path, p)) { out.route = r; return }
    }
  }
}

const decoder = new TargetDecoder()

/** The request's path as the firewall sees it (decoded, dot segments removed, no parameters), without the query. */
export function normalisedPath (p: HeadParser): string {
  if (!p.absoluteForm) {
    // origin-form (nearly every request): slice only the path out of the head's bytes, not the whole target
    const buf = p.buf
    const start = p.base + p.targetStart
    const end = p.base + p.targetEnd
    let q = buf.indexOf(0x3f, start)
    if (q === -1 || q > end) q = end
    if (q === start) return '/'
    const raw = buf.latin1Slice(start, q)
    return (scanPath(raw, 0, raw.length) & (P_DECODE | P_NORMALISE)) !== 0 ? decoder.decodePath(raw, 0, raw.length) : raw
  }
  const target = p.target()
  const start = pathStartOf(target)
  let end = target.indexOf('?', start)
  if (end === -1) end = target.length
  if (start === end) return '/'
  if ((scanPath(target, start, end) & (P_DECODE | P_NORMALISE)) !== 0) return decoder.decodePath(target, start, end)
  return start === 0 && end === target.length ? target : target.slice(start, end)
}

/** This thread's router for `config`, or null when it has no routes (every request goes to pool "default"). */
export function compileRouter (config: Config, pools: PoolSet, state: SharedState): Router | null {
  const routes = config.routes
  if (routes === undefined || routes.length === 0) return null
  return new Router(routes.map((r, i) => new CompiledRoute(i, r, pools, state, config.rateLimit)))
}
