/**
 * The primary thread: owns the listening socket, the shared state, the health
 * checks and (in worker mode) the worker pool. `workers: 0` serves every
 * connection on this thread with the same connection handler the workers use.
 */
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
import { ActiveHealthChecker } from '../health/active'
import { PassiveReviver } from '../health/passive'
import { upstreamStatus, type UpstreamStatus } from '../health/status'
import { logger, configureLog, flushLogs, reopenLogs } from '../log'
import { version } from '../version'
import { startAdmin, type AdminServer } from '../admin/server'
import type { AdminTarget, ReloadResult } from '../admin/target'
import { SharedCacheStore, type SharedCacheInit } from '../cache/store'
import { ClusterNode } from '../cluster/node'

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
  private sequentialLeases: ReturnType<typeof ClusterNode.sequentialBroker> | null = null
  private workers: WorkerPool | null = null
  private checker: ActiveHealthChecker | null = null
  private readonly reviver: PassiveReviver
  private stopThreadStats: () => void = () => {}
  private stopping: Promise<void> | null = null
  /** Membership of a cluster of instances through Redis (config.cluster), null when off. */
  cluster: ClusterNode | null = null
  /** The workers' channel to the cluster node's leases (worker mode with config.cluster). */
  private readonly clusterChannel: string | null
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
    const logFailure = configureLog(config.log, config.workers === 0)
    if (logFailure !== null) throw new Error(logFailure)
    this.state = SharedState.create(config.rateLimit?.tableSize ?? 0)
    this.table = buildUpstreamTable(config, this.state, null)
    this.stickySecret = config.stickySessions !== undefined
      ? (config.stickySessions.secret ?? randomBytes(32).toString('base64url'))
      : null
    this.cacheInit = config.cache !== undefined ? SharedCacheStore.allocate(config.cache.maxBytes, config.cache.maxEntryBytes) : null
    this.cache = this.cacheInit !== null ? new SharedCacheStore(this.cacheInit, this.state) : null
    this.reviver = new PassiveReviver(config.healthCheck.passive, this.state, this.table, config.healthCheck.active !== undefined)
    if (config.cluster !== undefined) ClusterNode.prepare(this.state)
    this.clusterChannel = config.cluster !== undefined && config.workers > 0 ? `switchyard-cluster:${randomBytes(12).toString('hex')}` : null
    if (config.workers === 0) {
      const leases = config.cluster !== undefined ? ClusterNode.sequentialBroker(() => this.cluster, config.cluster.redis.timeoutMs) : null
      this.sequentialLeases = leases
      const ctx = createThreadProxy(config, this.state, this.table, { stickySecret: this.stickySecret, cache: this.cacheInit, leases })
      ctx.workerSlot = this.state.claimWorkerSlot(1)
      this.stopThreadStats = startThreadStats(ctx)
      this.sequential = ctx
      this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.onSequentialConnection(socket))
    } else {
      this.workers = new WorkerPool(config.workers, config, this.state, this.table, this.stickySecret, this.cacheInit, this.clusterChannel)
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
    if (config.cluster !== undefined) {
      lb.cluster = await ClusterNode.start(config, lb.state, config.listen, () => lb.table)
      if (lb.clusterChannel !== null) lb.cluster.listen(lb.clusterChannel)
    }
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
    if (config.healthCheck.active !== undefined) {
      lb.checker = new ActiveHealthChecker(config.healthCheck.active, lb.state, lb.table)
      lb.clusterProbes(lb.checker)
      lb.checker.start()
    }
    lb.reviver.start()
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
      upstreams: lb.table.map((u) => u.address),
      algorithm: config.balancing.algorithm,
      version,
    }, 'listening')
    return lb
  }

  get mode (): 'sequential' | 'workers' { return this.workers === null ? 'sequential' : 'workers' }

  /** Shared health: the cluster decides which upstreams this instance probes, and hears every result. */
  private clusterProbes (checker: ActiveHealthChecker): void {
    const node = this.cluster
    if (node === null) return
    checker.shouldProbe = (entry) => node.shouldProbe(entry)
    checker.onResult = (entry, status, healthy) => { node.onProbeResult(entry, status, healthy) }
    checker.setProbeName(node.instanceId)
  }

  /** The worker pool (worker mode only), for tests and the admin API. */
  get workerPool (): WorkerPool | null { return this.workers }

  upstreamStatus (): UpstreamStatus[] {
    return upstreamStatus(this.state, this.table)
  }

  /**
   * Apply a new config without dropping connections. `listen` and `workers`
   * need a restart: reported in the result, the rest still applies.
   */
  reload (next: Config): ReloadResult {
    const restartNeeded: string[] = []
    if (next.listen !== this.config.listen) restartNeeded.push('listen')
    if (next.workers !== this.config.workers) restartNeeded.push('workers')
    if ((next.rateLimit?.tableSize ?? 0) !== (this.config.rateLimit?.tableSize ?? 0)) restartNeeded.push('rateLimit.tableSize')
    const effective: Config = { ...next, listen: this.config.listen, workers: this.config.workers, rateLimit: next.rateLimit === undefined ? undefined : { ...next.rateLimit, tableSize: this.config.rateLimit?.tableSize ?? next.rateLimit.tableSize } }
    if (effective.cache !== undefined && (this.cacheInit === null || effective.cache.maxBytes !== this.config.cache?.maxBytes || effective.cache.maxEntryBytes !== this.config.cache?.maxEntryBytes)) {
      restartNeeded.push('cache.maxBytes / cache.maxEntryBytes (the cache memory is allocated at start)')
      ;(effective as { cache?: unknown }).cache = this.config.cache
    }
    if (effective.rateLimit !== undefined && this.state.rateTableSlots === 0) {
      restartNeeded.push('rateLimit (enabling it needs shared memory allocated at start)')
      ;(effective as { rateLimit?: unknown }).rateLimit = undefined
    }
    Object.freeze(effective)
    const table = buildUpstreamTable(effective, this.state, this.table)
    this.config = effective
    this.table = table
    const logFailure = configureLog(effective.log, effective.workers === 0)
    if (logFailure !== null) logger.error({ err: logFailure }, 'the access log stays where it was')
    if (this.sequential !== null) applyConfig(this.sequential, effective, table, { stickySecret: this.stickySecret, cache: this.cacheInit, leases: this.sequentialLeases })
    if (this.workers !== null) this.workers.broadcast({ type: 'config', config: effective, table })
    const active = effective.healthCheck.active
    if (active !== undefined) {
      if (this.checker === null) { this.checker = new ActiveHealthChecker(active, this.state, table); this.clusterProbes(this.checker); this.checker.start() } else { this.checker.setConfig(active); this.checker.setTable(table) }
    } else if (this.checker !== null) {
      void this.checker.stop()
      this.checker = null
    }
    this.reviver.setTable(table)
    this.reviver.setConfig(effective.healthCheck.passive, active !== undefined)
    if (this.cluster !== null) {
      this.cluster.setRateLimit(effective)
      this.cluster.setHealth(active ?? null)
    }
    logger.info({ upstreams: table.map((u) => u.address), restartNeeded }, 'configuration reloaded')
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
      if (this.checker !== null) await this.checker.stop()
      this.reviver.stop()
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
      if (this.cluster !== null) await this.cluster.stop()
      // last, so /api/status still answers while connections drain
      if (this.admin !== null) await this.admin.close()
      logger.info('stopped')
      await flushLogs()
    })()
    return await this.stopping
  }
}
