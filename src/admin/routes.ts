/**
 * The admin API's routes. Control plane: it may allocate and throw; every
 * answer is JSON except /metrics (Prometheus text) and / (the dashboard).
 *
 *   GET  /                          dashboard (token may come from ?token=)
 *   GET  /api/status                JSON snapshot (./status)
 *   GET  /metrics                   Prometheus text format 0.0.4 (./prometheus)
 *   POST /api/upstreams/:id/drain   no new requests to it; in-flight ones finish
 *   POST /api/upstreams/:id/enable  back into rotation
 *   POST /api/reload                re-read the config source and apply it
 */
import { upstreamKey } from '../routing/pools'
import type * as http from 'node:http'
import type { UpstreamEntry } from '../shared/state'
import { poolResilience } from '../health/pool-status'
import { configuredPools } from '../proxy/resilience-config'
import { ADMIN_DRAINING, ADMIN_ENABLED, U_ADMIN_STATE } from '../shared/layout'
import { ConfigError, errorCatalogue } from '../errors'
import { logger } from '../log'

import { bearerToken, type TokenCheck } from './auth'
import type { CounterTotals } from './totals'
import type { AdminTarget } from './target'
import { buildStatus } from './status'
import { CONTENT_TYPE as METRICS_CONTENT_TYPE, type SwitchyardMetrics } from './prometheus'
import { dashboardHtml, dashboardCsp } from './dashboard'
import { primaryKey } from '../cache/key'
import { BUSY, REMOVED } from '../cache/store'

export interface AdminContext {
  readonly lb: AdminTarget
  readonly totals: CounterTotals
  /** The /metrics registry (prom-client); reads `totals` and the shared state when scraped. */
  readonly metrics: SwitchyardMetrics
  /** The token check in force now (it can change on reload); null = open. */
  token (): TokenCheck | null
  /** The admin listen address as configured when the server started. */
  readonly listen: string
}

const log = logger.child({ component: 'admin' })

function sendJson (res: http.ServerResponse, status: number, body: unknown, extra: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  })
  res.end(text)
}

function sendText (res: http.ServerResponse, status: number, contentType: string, text: string, extra: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...extra,
  })
  res.end(text)
}

function methodNotAllowed (res: http.ServerResponse, allow: string): void {
  sendJson(res, 405, { error: 'method not allowed' }, { allow })
}

/**
 * A browser on another site can send a simple POST to a loopback admin port
 * (no preflight). Refuse state changes whose Origin is not this listener.
 */
function crossSite (req: http.IncomingMessage): boolean {
  if (req.headers['sec-fetch-site'] === 'cross-site') return true
  const origin = req.headers.origin
  if (origin === undefined) return false
  try {
    return new URL(origin).host !== req.headers.host
  } catch {
    return true
  }
}

function findUpstream (table: readonly UpstreamEntry[], key: string): UpstreamEntry | null {
  // an id (u3), an address in pool "default", or pool/address in any pool
  for (const entry of table) if (entry.id === key || upstreamKey(entry) === key || (entry.pool + '/' + entry.address) === key) return entry
  return null
}

export function handleRequest (ctx: AdminContext, req: http.IncomingMessage, res: http.ServerResponse): void {
  req.resume() // bodies are not used; drain them so keep-alive works
  let url: URL
  try {
    url = new URL(req.url ?? '/', 'http://admin.invalid')
  } catch {
    sendJson(res, 400, { error: 'bad request target' })
    return
  }
  const path = url.pathname
  const method = req.method ?? 'GET'
  const isPage = path === '/' || path === '/index.html'

  const check = ctx.token()
  if (check !== null) {
    // the page may carry the token in its URL (it then sends it as a header)
    const presented = bearerToken(req) ?? (isPage ? url.searchParams.get('token') : null)
    if (!check.matches(presented)) {
      const info = errorCatalogue.SWY_ERR_ADMIN_UNAUTHORIZED
      const headers = { 'www-authenticate': 'Bearer realm="switchyard"' }
      if (isPage) sendText(res, info.status, 'text/plain; charset=utf-8', 'Unauthorized: open this page as /?token=<admin token>\n', headers)
      else sendJson(res, info.status, { error: info.message, code: 'SWY_ERR_ADMIN_UNAUTHORIZED' }, headers)
      return
    }
  }

  try {
    if (isPage) {
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD')
      sendText(res, 200, 'text/html; charset=utf-8', dashboardHtml, {
        'content-security-policy': dashboardCsp,
        // the URL may hold the token: never send it on
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
      })
      return
    }
    if (path === '/api/status') {
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD')
      ctx.totals.sample(ctx.lb.table)
      const status = buildStatus(ctx.lb, ctx.totals)
      // each pool's resilience state (panic, queue, retries) next to its routing counters
      const resilience = new Map(poolResilience(ctx.lb.state, configuredPools(ctx.lb.table)).map((p) => [p.name, p]))
      sendJson(res, 200, { ...status, pools: status.pools.map((p) => ({ ...p, ...resilience.get(p.name), name: p.name })) })
      return
    }
    if (path === '/metrics') {
      if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed(res, 'GET, HEAD')
      ctx.totals.sample(ctx.lb.table)
      ctx.metrics.render().then(
        (text) => sendText(res, 200, METRICS_CONTENT_TYPE, text),
        (err: Error) => {
          log.error({ err: err.message, path }, 'metrics rendering failed')
          if (!res.headersSent) sendJson(res, 500, { error: err.message })
        })
      return
    }
    const upstreamAction = /^\/api\/upstreams\/(.+)\/(drain|enable)$/.exec(path) // an id may be pool/address
    if (upstreamAction !== null) {
      if (method !== 'POST') return methodNotAllowed(res, 'POST')
      if (crossSite(req)) { sendJson(res, 403, { error: 'cross-site request refused' }); return }
      let key: string
      try { key = decodeURIComponent(upstreamAction[1]) } catch { sendJson(res, 400, { error: 'bad upstream id' }); return }
      const entry = findUpstream(ctx.lb.table, key)
      if (entry === null) { sendJson(res, 404, { error: `no upstream "${key}"` }); return }
      const draining = upstreamAction[2] === 'drain'
      // pool views recompute who is eligible when the health generation moves (healthChanged),
      // so this takes effect on every thread for the next request
      ctx.lb.state.storeUpstream(entry.slot, U_ADMIN_STATE, draining ? ADMIN_DRAINING : ADMIN_ENABLED)
      ctx.lb.state.healthChanged()
      // and on every instance of a cluster, by address, within one heartbeat
      ctx.lb.cluster?.publishAdminState(entry.address, draining)
      log.info({ upstream: entry.address, id: entry.id, draining }, draining ? 'upstream drained by operator' : 'upstream enabled by operator')
      sendJson(res, 200, { id: entry.id, pool: entry.pool, address: entry.address, draining })
      return
    }
    if (path === '/api/cache/purge') {
      if (method !== 'POST') return methodNotAllowed(res, 'POST')
      if (crossSite(req)) { sendJson(res, 403, { error: 'cross-site request refused' }); return }
      purge(ctx, req, res)
      return
    }
    if (path === '/api/reload') {
      if (method !== 'POST') return methodNotAllowed(res, 'POST')
      if (crossSite(req)) { sendJson(res, 403, { error: 'cross-site request refused' }); return }
      reload(ctx, res)
      return
    }
    sendJson(res, 404, { error: 'not found' })
  } catch (err) {
    log.error({ err: (err as Error).message, path }, 'admin request failed')
    if (!res.headersSent) sendJson(res, 500, { error: (err as Error).message })
    else res.destroy()
  }
}

/**
 * POST /api/cache/purge?path=/a/b&host=example.com: remove a URL (and every
 * Vary variant of it) from the shared cache. `host` is the request's Host as
 * clients send it; `path` the request target (path and query).
 */
function purge (ctx: AdminContext, req: http.IncomingMessage, res: http.ServerResponse): void {
  const cache = ctx.lb.cache
  if (cache === null) { sendJson(res, 409, { error: 'the cache is off (no cache section at start)' }); return }
  const query = new URL(req.url ?? '/', 'http://admin.invalid').searchParams
  const target = query.get('path')
  const host = query.get('host') ?? ''
  if (target === null || !target.startsWith('/')) { sendJson(res, 400, { error: 'path=/... is required' }); return }
  const key = primaryKey(host, target)
  // the store refuses a write while another thread holds its lock: try again a few ms later
  let attempt = 0
  const tryRemove = (): void => {
    const result = cache.tryRemove(key)
    if (result === BUSY && ++attempt < 10) { setTimeout(tryRemove, 5); return }
    const removed = result === REMOVED
    log.info({ host, path: target, removed }, 'cache purge')
    sendJson(res, 200, { host, path: target, purged: removed })
  }
  tryRemove()
}

function reload (ctx: AdminContext, res: http.ServerResponse): void {
  const lb = ctx.lb
  const source = lb.configSource
  if (source === null) { sendJson(res, 409, { error: 'started without a config file' }); return }
  let next
  try {
    next = source()
  } catch (err) {
    if (err instanceof ConfigError) {
      log.warn({ errors: err.errors }, 'reload rejected: invalid configuration; still serving the previous one')
      sendJson(res, 400, { error: 'invalid configuration', errors: err.errors })
      return
    }
    throw err
  }
  // fold counters in right before and after the table swap (see ./totals)
  const adminBefore = lb.config.admin?.listen
  ctx.totals.sample(lb.table)
  const result = lb.reload(next)
  ctx.totals.sample(lb.table)
  const restartNeeded = [...result.restartNeeded]
  // this listener stays where it is until a restart
  if (next.admin?.listen !== adminBefore) restartNeeded.push('admin.listen')
  // certificate files that failed to load (the previous certificates stay): logged, and said here
  sendJson(res, 200, { applied: result.applied, restartNeeded, warnings: result.warnings ?? [] })
}
