/**
 * The primary thread: owns the listening socket, the shared state, the health
 * checks and (in worker mode) the worker pool. `workers: 0` serves every
 * connection on this thread with the same connection handler the workers use.
 */
import { poolStatus, routeStatus, type PoolStatus, type RouteStatus } from '../routing/status'
import * as net from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Config } from '../config/types'
import { parseHostPort } from '../config/types'
import { SharedState, type UpstreamEntry } from '../shared/state'
import { buildUpstreamTable } from '../shared/upstreams'
import { H_CONNECTIONS_ACCEPTED } from '../shared/layout'
import { createThreadProxy, attachConnection, applyConfig, startThreadStats, drainThread } from '../proxy/thread'
import type { ProxyContext } from '../proxy/context'
import { WorkerPool } from './workers'
import { PoolHealth } from '../routing/pool-health'
import { shadowedRoutes } from '../routing/check'
import { rateTableSlots } from '../routing/rate-table'
import { upstreamStatus, type UpstreamStatus } from '../health/status'
import { logger, configureLog, flushLogs, reopenLogs } from '../log'
import { version } from '../version'
import { startAdmin, type AdminServer } from '../admin/server'
import type { AdminTarget, ReloadResult } from '../admin/target'
import { SharedCacheStore, type SharedCacheInit } from '../cache/store'

export interface ListenAddress {
  host: string
  port: number
}

export class Switchyard implements AdminTarget {
  config: Config
  readonly state: SharedState
  table: readonly UpstreamEntry[]
  readonly startedAt = Date.now()
  readonly stickySecret: string | null
  /** The shared cache's memory (config.cache at start), and the primary's own handle on it (purge). */
  readonly cacheInit: SharedCacheInit | null
  readonly cache: SharedCacheStore | null
  private readonly server: net.Server
  private sequential: ProxyContext | null = null
  private workers: WorkerPool | null = null
  /** Active checks and passive revival, per pool. */
  private readonly health: PoolHealth
  private stopThreadStats: () => void = () => {}
  private stopping: Promise<void> | null = null
  /** Admin API and dashboard (config.admin), null when off. */
  admin: AdminServer | null = null
  address: ListenAddress = { host: '', port: 0 }
  /**
   * Re-reads and validates the config source (set by the CLI to re-read lb.json
   * and re-apply flags); null when started from an object. Throws ConfigError.
   */
  configSource: (() => Config) | null = null

  private constructor (config: Config) {
    this.config = config
    const logFailure = configureLog(config.log)
    if (logFailure !== null) throw new Error(logFailure)
    this.state = SharedState.create(rateTableSlots(config))
    this.table = buildUpstreamTable(config, this.state, null)
    warnShadowedRoutes(config)
    this.stickySecret = config.stickySessions !== undefined
      ? (config.stickySessions.secret ?? randomBytes(32).toString('base64url'))
      : null
    this.cacheInit = config.cache !== undefined ? SharedCacheStore.allocate(config.cache.maxBytes, config.cache.maxEntryBytes) : null
    this.cache = this.cacheInit !== null ? new SharedCacheStore(this.cacheInit, this.state) : null
    this.health = new PoolHealth(this.state)
    this.health.apply(config, this.table)
    if (config.workers === 0) {
      const ctx = createThreadProxy(config, this.state, this.table, { stickySecret: this.stickySecret, cache: this.cacheInit })
      ctx.workerSlot = this.state.claimWorkerSlot(1)
      this.stopThreadStats = startThreadStats(ctx)
      this.sequential = ctx
      this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.onSequentialConnection(socket))
    } else {
      this.workers = new WorkerPool(config.workers, config, this.state, this.table, this.stickySecret, this.cacheInit)
      this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
        this.state.addHeader(H_CONNECTIONS_ACCEPTED, 1)
        ;(this.workers as WorkerPool).dispatch(socket)
      })
    }
    this.server.on('error', (err) => logger.error({ err: err.message }, 'listener error'))
  }

  private onSequentialConnection (socket: net.Socket): void {
    this.state.addHeader(H_CONNECTIONS_ACCEPTED, 1)
    const peer = socket.remoteAddress
    if (peer === undefined) { socket.destroy(); return }
    attachConnection(this.sequential as ProxyContext, socket, peer)
  }

  static async start (config: Config): Promise<Switchyard> {
    const lb = new Switchyard(config)
    // accept only once the workers can serve: the first requests must not wait for threads to boot
    if (lb.workers !== null) await lb.workers.ready()
    const { host, port } = parseHostPort(config.listen)
    await new Promise<void>((resolve, reject) => {
      lb.server.once('error', reject)
      lb.server.listen({ host, port, backlog: 4096 }, () => {
        lb.server.off('error', reject)
        resolve()
      })
    })
    const bound = lb.server.address() as net.AddressInfo
    lb.address = { host: bound.address, port: bound.port }
    lb.health.start()
    if (config.admin !== undefined) {
      try {
        lb.admin = await startAdmin(lb)
      } catch (err) {
        await lb.stop(0)
        throw err
      }
    }
    logger.info({
      address: `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`,
      mode: config.workers === 0 ? 'sequential' : 'workers',
      workers: config.workers,
      upstreams: lb.table.map((u) => u.pool === 'default' ? u.address : `${u.pool}/${u.address}`),
      algorithm: config.balancing.algorithm,
      version,
    }, 'listening')
    return lb
  }

  get mode (): 'sequential' | 'workers' { return this.workers === null ? 'sequential' : 'workers' }

  /** The worker pool (worker mode only), for tests and the admin API. */
  get workerPool (): WorkerPool | null { return this.workers }

  upstreamStatus (): UpstreamStatus[] {
    return upstreamStatus(this.state, this.table)
  }

  poolStatus (): PoolStatus[] {
    return poolStatus(this.config, this.state, this.table)
  }

  routeStatus (): RouteStatus[] {
    return routeStatus(this.config, this.state)
  }

  /**
   * Apply a new config without dropping connections. `listen` and `workers`
   * need a restart: reported in the result, the rest still applies.
   */
  reload (next: Config): ReloadResult {
    const restartNeeded: string[] = []
    if (next.listen !== this.config.listen) restartNeeded.push('listen')
    if (next.workers !== this.config.workers) restartNeeded.push('workers')
    const slots = this.state.rateTableSlots
    if (next.rateLimit !== undefined && slots !== 0 && next.rateLimit.tableSize !== slots) restartNeeded.push('rateLimit.tableSize')
    else if ((next.rateLimit?.tableSize ?? 0) !== (this.config.rateLimit?.tableSize ?? 0) && slots === 0) restartNeeded.push('rateLimit.tableSize')
    // the table is allocated at start: a limit counts in the table that exists
    const effective: Config = { ...next, listen: this.config.listen, workers: this.config.workers, rateLimit: next.rateLimit === undefined ? undefined : { ...next.rateLimit, tableSize: slots !== 0 ? slots : next.rateLimit.tableSize } }
    if (effective.cache !== undefined && (this.cacheInit === null || effective.cache.maxBytes !== this.config.cache?.maxBytes || effective.cache.maxEntryBytes !== this.config.cache?.maxEntryBytes)) {
      restartNeeded.push('cache.maxBytes / cache.maxEntryBytes (the cache memory is allocated at start)')
      ;(effective as { cache?: unknown }).cache = this.config.cache
    }
    if (effective.rateLimit !== undefined && this.state.rateTableSlots === 0) {
      restartNeeded.push('rateLimit (enabling it needs shared memory allocated at start)')
      ;(effective as { rateLimit?: unknown }).rateLimit = undefined
    }
    if (this.state.rateTableSlots === 0 && (effective.routes ?? []).some((r) => r.rateLimit !== undefined)) {
      restartNeeded.push('routes[].rateLimit (the first rate limit needs shared memory allocated at start)')
    }
    Object.freeze(effective)
    const table = buildUpstreamTable(effective, this.state, this.table)
    resetMovedRouteCounters(this.state, this.config, effective)
    warnShadowedRoutes(effective)
    this.config = effective
    this.table = table
    const logFailure = configureLog(effective.log)
    if (logFailure !== null) logger.error({ err: logFailure }, 'the access log stays where it was')
    if (this.sequential !== null) applyConfig(this.sequential, effective, table, { stickySecret: this.stickySecret, cache: this.cacheInit })
    if (this.workers !== null) this.workers.broadcast({ type: 'config', config: effective, table })
    this.health.apply(effective, table)
    logger.info({ upstreams: table.map((u) => u.pool === 'default' ? u.address : `${u.pool}/${u.address}`), routes: effective.routes?.length ?? 0, restartNeeded }, 'configuration reloaded')
    return { applied: true, restartNeeded }
  }

  /** SIGUSR1 (logrotate): every thread opens `log.accessFile` again. */
  reopenLogs (): void {
    reopenLogs()
    if (this.workers !== null) this.workers.broadcast({ type: 'reopenLogs' })
  }

  /** Stop accepting, let in-flight requests finish (up to drainMs), then release everything. */
  async stop (drainMs = this.config.timeouts.drainMs): Promise<void> {
    if (this.stopping !== null) return await this.stopping
    this.stopping = (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
      await this.health.stop()
      if (this.sequential !== null) {
        const ctx = this.sequential
        drainThread(ctx)
        const deadline = Date.now() + drainMs
        while (ctx.clients.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
        for (const c of ctx.clients) c.destroy()
        ctx.sweeper.stop()
        this.stopThreadStats()
        ctx.pool.drain()
        if (ctx.tracing !== null) await ctx.tracing.shutdown() // export the last spans (bounded)
      }
      if (this.workers !== null) await this.workers.drainAndClose(drainMs)
      await closed
      // last, so /api/status still answers while connections drain
      if (this.admin !== null) await this.admin.close()
      logger.info('stopped')
      await flushLogs()
    })()
    return await this.stopping
  }
}

/** The start-up (and reload) warning for routes an earlier route covers (src/routing/check.ts). */
function warnShadowedRoutes (config: Config): void {
  for (const warning of shadowedRoutes(config.routes ?? [])) logger.warn({ route: warning }, 'route can never match')
}

/**
 * Route hit counters are per position in the table: a position whose route
 * changed (another name or match) starts again from zero, one that kept its
 * route keeps its count.
 */
function resetMovedRouteCounters (state: SharedState, previous: Config, next: Config): void {
  const before = previous.routes ?? []
  const after = next.routes ?? []
  for (let i = 0; i < Math.max(before.length, after.length); i++) {
    const a = before[i]
    const b = after[i]
    if (a === undefined || b === undefined || a.name !== b.name || JSON.stringify(a.match) !== JSON.stringify(b.match)) state.storeRouteHits(i, 0)
  }
}
