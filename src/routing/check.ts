/**
 * Checks of pools and routes that JSON Schema cannot express (load.ts runs
 * them with the other semantic checks; every message starts with the JSON
 * path), and the start-up warning for routes that can never match.
 */
import type { Config, HeaderEditsConfig, RouteConfig } from '../config/types'
import { parseHostPort } from '../config/types'
import { MAX_UPSTREAMS } from '../shared/layout'
import { DEFAULT_POOL, allUpstreams } from './pools'
import { unknownVariables } from './templates'
import { segmentPrefix } from './router'

/** Fields a route may not set, add or remove upstream: hop-by-hop (RFC 9110 §7.6.1), framing, and what the proxy writes itself. */
export const FORBIDDEN_REQUEST_FIELDS = [
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'http2-settings',
  'content-length', 'transfer-encoding', 'host', 'x-forwarded-for', 'x-forwarded-proto', 'forwarded', 'via',
] as const
/** Fields a route may not set, add or remove on a response: hop-by-hop and framing. */
export const FORBIDDEN_RESPONSE_FIELDS = [
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'http2-settings',
  'content-length', 'transfer-encoding',
] as const

export function routingConfigErrors (config: Config): string[] {
  const errors: string[] = []
  const pools = config.pools ?? {}
  const names = new Set(Object.keys(pools))
  if (config.upstreams === undefined && names.size === 0) errors.push('/: needs "upstreams" (the pool "default") or "pools"')
  if (config.upstreams !== undefined && names.has(DEFAULT_POOL)) {
    errors.push(`/pools/${DEFAULT_POOL}: duplicate pool "${DEFAULT_POOL}": the top-level "upstreams" already define it`)
  }
  if (config.upstreams !== undefined) names.add(DEFAULT_POOL)
  const everyUpstream = allUpstreams(config)
  if (everyUpstream.length > MAX_UPSTREAMS) errors.push(`/pools: ${everyUpstream.length} upstreams in all pools together, at most ${MAX_UPSTREAMS}`)
  // the top level's own checks are in load.ts; a pool's upstreams get the same ones here
  for (const [name, pool] of Object.entries(pools)) {
    const seen = new Map<string, number>()
    pool.upstreams.forEach((u, i) => {
      const path = `/pools/${name}/upstreams/${i}/address`
      const { port } = parseHostPort(u.address)
      if (!(port >= 1 && port <= 65535)) errors.push(`${path}: port ${port} is out of range 1-65535`)
      const prev = seen.get(u.address)
      if (prev !== undefined) errors.push(`${path}: duplicate of /pools/${name}/upstreams/${prev}/address`)
      seen.set(u.address, i)
    })
    const hk = pool.balancing.hashKey
    if (hk.source !== 'ip' && hk.name === undefined) errors.push(`/pools/${name}/balancing/hashKey/name: required when source is "${hk.source}"`)
  }
  const routeNames = new Map<string, number>()
  ;(config.routes ?? []).forEach((route, i) => {
    const at = `/routes/${i}`
    if (route.name !== undefined) {
      const prev = routeNames.get(route.name)
      if (prev !== undefined) errors.push(`${at}/name: duplicate of /routes/${prev}/name ("${route.name}")`)
      routeNames.set(route.name, i)
    }
    if (route.pool !== undefined && !names.has(route.pool)) {
      errors.push(`${at}/pool: unknown pool "${route.pool}" (pools: ${[...names].join(', ') || 'none'})`)
    }
    const actions = [route.pool, route.redirect, route.respond].filter((a) => a !== undefined).length
    if (actions > 1) errors.push(`${at}: only one of "pool", "redirect", "respond"`)
    if (actions === 0 && !names.has(DEFAULT_POOL)) errors.push(`${at}: no "pool", "redirect" or "respond", and there is no pool "${DEFAULT_POOL}" to send it to`)
    if (route.stripPathPrefix === true && route.match.pathPrefix === undefined) errors.push(`${at}/stripPathPrefix: needs ${at}/match/pathPrefix`)
    regexError(route.match.pathRegex, `${at}/match/pathRegex`, errors)
    regexError(route.rewritePath?.regex, `${at}/rewritePath/regex`, errors)
    for (const [name, c] of Object.entries(route.match.headers ?? {})) {
      if (typeof c === 'object' && 'regex' in c) regexError(c.regex, `${at}/match/headers/${name}/regex`, errors)
    }
    headerEditErrors(route.requestHeaders, `${at}/requestHeaders`, FORBIDDEN_REQUEST_FIELDS, errors)
    headerEditErrors(route.responseHeaders, `${at}/responseHeaders`, FORBIDDEN_RESPONSE_FIELDS, errors)
    if (route.redirect !== undefined) {
      for (const v of unknownVariables(route.redirect.location)) errors.push(`${at}/redirect/location: unknown variable ${v}`)
    }
    if (route.rateLimit !== undefined && config.rateLimit === undefined && route.rateLimit.maxRequests > 16_777_215) {
      errors.push(`${at}/rateLimit/maxRequests: at most 16777215`)
    }
  })
  return errors
}

function regexError (source: string | undefined, path: string, errors: string[]): void {
  if (source === undefined) return
  try {
    new RegExp(source) // eslint-disable-line no-new
  } catch (err) {
    errors.push(`${path}: invalid regular expression: ${(err as Error).message}`)
  }
}

function headerEditErrors (edits: HeaderEditsConfig | undefined, path: string, forbidden: readonly string[], errors: string[]): void {
  if (edits === undefined) return
  for (const op of ['set', 'add'] as const) {
    for (const [name, value] of Object.entries(edits[op] ?? {})) {
      if (forbidden.includes(name.toLowerCase())) errors.push(`${path}/${op}/${name}: "${name}" cannot be changed by a route (hop-by-hop, framing, or written by the proxy)`)
      for (const v of unknownVariables(value)) errors.push(`${path}/${op}/${name}: unknown variable ${v}`)
    }
  }
  ;(edits.remove ?? []).forEach((name, i) => {
    if (forbidden.includes(name.toLowerCase())) errors.push(`${path}/remove/${i}: "${name}" cannot be changed by a route (hop-by-hop, framing, or written by the proxy)`)
  })
}

/**
 * Routes that can never match because an earlier one covers them, where that
 * is cheap to see: the earlier route has at most a host list and a
 * pathPrefix, its hosts include every host of the later one (or it has none),
 * and its prefix covers the later one's prefix or exact path.
 */
export function shadowedRoutes (routes: readonly RouteConfig[]): string[] {
  const warnings: string[] = []
  routes.forEach((later, j) => {
    for (let i = 0; i < j; i++) {
      const earlier = routes[i]
      const m = earlier.match
      if (m.path !== undefined || m.pathRegex !== undefined || m.methods !== undefined || m.headers !== undefined) continue
      if (m.host !== undefined) {
        const hosts = new Set(m.host.map((h) => h.toLowerCase()))
        if (later.match.host === undefined || !later.match.host.every((h) => hosts.has(h.toLowerCase()))) continue
      }
      if (m.pathPrefix !== undefined) {
        const own = later.match.pathPrefix ?? later.match.path
        if (own === undefined || !segmentPrefix(own, m.pathPrefix)) continue
      }
      warnings.push(`/routes/${j}${later.name !== undefined ? ` ("${later.name}")` : ''} can never match: /routes/${i}${earlier.name !== undefined ? ` ("${earlier.name}")` : ''} comes first and covers it`)
      break
    }
  })
  return warnings
}

/**
 * Keys that appear twice in the object at `key` of the top level of a JSON
 * text (JSON.parse keeps the last silently: two pools of one name would merge
 * into one without a word). A small scanner, not a parser: the text already
 * parsed.
 */
export function duplicateKeysIn (text: string, key: string): string[] {
  let depth = 0
  let lastTopKey = ''
  let inTarget = false
  const seen = new Set<string>()
  const dups: string[] = []
  let i = 0
  while (i < text.length) {
    const c = text[i]
    if (c === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      let k = j + 1
      while (k < text.length && (text[k] === ' ' || text[k] === '\n' || text[k] === '\r' || text[k] === '\t')) k++
      if (text[k] === ':') { // a string before ':' is a key
        const name = JSON.parse(text.slice(i, j + 1)) as string
        if (depth === 1) lastTopKey = name
        else if (depth === 2 && inTarget) { if (seen.has(name)) dups.push(name); seen.add(name) }
      }
      i = j + 1
      continue
    }
    if (c === '{' || c === '[') {
      depth++
      if (depth === 2) inTarget = c === '{' && lastTopKey === key
    } else if (c === '}' || c === ']') {
      depth--
      if (depth === 1) inTarget = false
    }
    i++
  }
  return dups
}
