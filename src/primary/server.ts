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
import { listenersOf, listenerName, sameBindings } from '../config/listeners'
import { SharedState, type UpstreamEntry } from '../shared/state'
import { buildUpstreamTable } from '../shared/upstreams'
import { H_CONNECTIONS_ACCEPTED, L_ACCEPTED } from '../shared/layout'
import { createThreadProxy, applyConfig, startThreadStats, drainThread } from '../proxy/thread'
import { acceptConnection, adoptedSocketOptions, applyTlsMaterial, clientOnRead, destroyAccepted, installListeners, openAccepted, readsIntoArena } from '../net/accept'
import { takeAccepts, socketOnHandle, type AcceptedHandle } from '../net/raw-accept'
import { seedClientTable } from '../net/client-table'
import { optionalHandoff, type FdHandoff } from './handoff'
import { startMemoryRelease } from './memory-release'
import { TlsManager, TICKET_KEY_ROTATION_MS, type CertificateStatus } from '../tls/manager'
import type { AcmeListener, ChallengeTable } from '../tls/acme'
import type { ProxyContext } from '../proxy/context'
import { WorkerPool } from './workers'
import type { ActiveHealthChecker } from '../health/active'
import { PoolHealth } from '../routing/pool-health'
import { shadowedRoutes } from '../routing/check'
import { rateTableSlots } from '../routing/rate-table'
import { upstreamStatus, type UpstreamStatus } from '../health/status'
import { logger, configureLog, flushLogs, reopenLogs } from '../log'
import { version } from '../version'
import type { AdminServer } from '../admin/server'
import type { AdminTarget, ReloadResult } from '../admin/target'
import { SharedCacheStore, type SharedCacheInit } from '../cache/store'
import { ClusterNode } from '../cluster/node'
import type { ErrorCode } from '../errors'

/**
 * The ACME client (acme-client, axios, node-forge, @peculiar/x509: about 2 MB of source) and the
 * admin API (prom-client, which loads @opentelemetry/api) are loaded only when the configuration
 * uses them, as tracing's SDK is (src/tracing/index.ts). Loaded at start-up whether used or not,
 * they took 8 MB of the primary's old generation (16.8 -> 8.4 MB used, idle, worker mode) and their
 * loading doubled its young generation (16 -> 32 MB committed) at start (#18).
 */
function loadAcme (): typeof AcmeListener {
  return (require('../tls/acme') as typeof import('../tls/acme')).AcmeListener
}

function loadAdmin (): typeof import('../admin/server').startAdmin {
  return (require('../admin/server') as typeof import('../admin/server')).startAdmin
}

function formatAddress (a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

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
  /** One server per listener, in the order of `listen`. */
  private readonly servers: net.Server[]
  /** Sequential mode: the descriptor addon that re-wraps plain connections to read into the read arena (null: not built, or worker mode). */
  private readonly rewrap: FdHandoff | null
  /** Certificates and ticket keys (null when no listener has TLS). */
  readonly tls: TlsManager | null
  private ticketTimer: NodeJS.Timeout | null = null
  /** Stops the memory release timer (config.memoryReleaseIntervalMs; a no-op when off). */
  private stopMemoryRelease: () => void = () => {}
  /** One per listener with tls.acme (tests and status read their state). */
  readonly acme: AcmeListener[] = []
  /** Connections accepted before the worker pool exists (it starts once the listeners are bound). */
  private early: Array<{ socket: net.Socket, listener: number }> = []
  private sequential: ProxyContext | null = null
  private sequentialLeases: ReturnType<typeof ClusterNode.sequentialBroker> | null = null
  private workers: WorkerPool | null = null
  /** Active checks and passive revival, per pool. */
  private readonly health: PoolHealth
  private stopThreadStats: () => void = () => {}
  private stopping: Promise<void> | null = null
  /** Membership of a cluster of instances through Redis (config.cluster), null when off. */
  cluster: ClusterNode | null = null
  /** The workers' channel to the cluster node's leases (worker mode with config.cluster). */
  private readonly clusterChannel: string | null
  /** Admin API and dashboard (config.admin), null when off. */
  admin: AdminServer | null = null
  /** The first listener's bound address. */
  address: ListenAddress = { host: '', port: 0 }
  /** Every listener's bound address, in the order of `listen`. */
  addresses: ListenAddress[] = []
  /**
   * Re-reads and validates the config source (set by the CLI to re-read lb.json
   * and re-apply flags); null when started from an object. Throws ConfigError.
   */
  configSource: (() => Config) | null = null

  private constructor (config: Config) {
    this.config = config
    const logFailure = configureLog(config.log, config.workers === 0)
    if (logFailure !== null) throw new Error(logFailure)
    // first: an unusable certificate fails the start before anything is allocated or bound
    this.tls = TlsManager.needed(config) ? new TlsManager(config) : null
    this.state = SharedState.create(rateTableSlots(config))
    seedClientTable(this.state)
    this.table = buildUpstreamTable(config, this.state, null)
    warnShadowedRoutes(config)
    this.stickySecret = config.stickySessions !== undefined
      ? (config.stickySessions.secret ?? randomBytes(32).toString('base64url'))
      : null
    this.cacheInit = config.cache !== undefined ? SharedCacheStore.allocate(config.cache.maxBytes, config.cache.maxEntryBytes) : null
    this.cache = this.cacheInit !== null ? new SharedCacheStore(this.cacheInit, this.state) : null
    this.health = new PoolHealth(this.state)
    this.health.apply(config, this.table)
    if (config.cluster !== undefined) ClusterNode.prepare(this.state)
    this.clusterChannel = config.cluster !== undefined && config.workers > 0 ? `switchyard-cluster:${randomBytes(12).toString('hex')}` : null
    if (config.workers === 0) {
      const leases = config.cluster !== undefined ? ClusterNode.sequentialBroker(() => this.cluster, config.cluster.redis.timeoutMs) : null
      this.sequentialLeases = leases
      const ctx = createThreadProxy(config, this.state, this.table, { stickySecret: this.stickySecret, cache: this.cacheInit, tls: this.tls?.material ?? null, tlsPort: 0, leases })
      ctx.workerSlot = this.state.claimWorkerSlot(1)
      this.stopThreadStats = startThreadStats(ctx)
      this.sequential = ctx
    }
    // sequential mode takes accepted handles (takeAccepts); where it cannot, it wraps a plain listener's
    // connections again, from a duplicated descriptor as worker mode does, so that they read into the
    // read arena (src/net/read-arena.ts); without the addon either, as accepted
    this.rewrap = config.workers === 0 ? optionalHandoff() : null
    this.servers = listenersOf(config).map((_, index) => {
      const server = config.workers === 0
        ? net.createServer({ allowHalfOpen: true, pauseOnConnect: this.rewrap !== null }, (socket) => this.onSequentialConnection(socket, index))
        : net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.onWorkerConnection(socket, index))
      server.on('error', (err) => logger.error({ err: err.message, listener: index }, 'listener error'))
      return server
    })
  }

  private onSequentialConnection (accepted: net.Socket, listener: number): void {
    this.countAccepted(listener)
    const peer = accepted.remoteAddress
    if (peer === undefined) { accepted.destroy(); return }
    const ctx = this.sequential as ProxyContext
    let socket: net.Socket | null = accepted
    if (this.rewrap !== null) {
      if (readsIntoArena(ctx, listener)) socket = this.rewrapped(this.rewrap, accepted, ctx, listener)
      else accepted.resume() // accepted paused (pauseOnConnect): a TLS or PROXY listener reads as usual
    }
    if (socket !== null) acceptConnection(ctx, listener, socket, peer)
  }

  /** `accepted` (paused) as a socket that reads into the read arena: a duplicate of its descriptor, the original closed. */
  private rewrapped (handoff: FdHandoff, accepted: net.Socket, ctx: ProxyContext, listener: number): net.Socket | null {
    const handle = (accepted as unknown as { _handle: { fd: number } | null })._handle
    if (handle === null || handle.fd < 0) { accepted.destroy(); return null }
    let fd = -1
    try {
      fd = handoff.duplicate(handle.fd)
      accepted.destroy() // the duplicate keeps the connection open
      return new net.Socket(adoptedSocketOptions(ctx, listener, fd))
    } catch (err) {
      logger.error({ code: 'SWY_ERR_FD_HANDOFF' satisfies ErrorCode, err: (err as Error).message }, 'could not take over an accepted descriptor; connection dropped')
      accepted.destroy()
      if (fd >= 0) handoff.close(fd)
      return null
    }
  }

  /**
   * From here on the listeners' connections come as handles (src/net/raw-accept.ts): no net.Socket
   * made and destroyed on this thread per connection. Where node's server handle is not what that
   * relies on, they keep coming as 'connection' (onSequentialConnection, onWorkerConnection).
   */
  private takeAccepts (): void {
    const onHandle = this.workers === null ? this.onSequentialHandle : this.onWorkerHandle
    for (let i = 0; i < this.servers.length; i++) takeAccepts(this.servers[i], i, onHandle)
  }

  /** Sequential mode: one socket on the accepted handle, reading into the read arena on a plain listener. */
  private readonly onSequentialHandle = (handle: AcceptedHandle, listener: number): void => {
    this.countAccepted(listener)
    const ctx = this.sequential as ProxyContext
    const socket = socketOnHandle(handle, clientOnRead(ctx, listener))
    const peer = socket.remoteAddress
    if (peer === undefined) { socket.destroy(); return }
    acceptConnection(ctx, listener, socket, peer)
  }

  private readonly onWorkerHandle = (handle: AcceptedHandle, listener: number): void => {
    this.countAccepted(listener)
    ;(this.workers as WorkerPool).dispatchHandle(handle, listener)
  }

  private countAccepted (listener: number): void {
    this.state.addHeader(H_CONNECTIONS_ACCEPTED, 1)
    this.state.addListener(listener, L_ACCEPTED, 1)
  }

  private onWorkerConnection (socket: net.Socket, listener: number): void {
    this.countAccepted(listener)
    if (this.workers === null) { this.early.push({ socket, listener }); return }
    this.workers.dispatch(socket, listener)
  }

  /** ACME listeners: a stored certificate or the self-signed fallback now, orders in the background. */
  private async startAcme (): Promise<void> {
    const tls = this.tls
    if (tls === null) return
    const hooks = {
      setCertificates: (index: number, certificates: Parameters<TlsManager['setAcmeCertificate']>[1][]) => {
        tls.setAcmeCertificate(index, certificates[0])
        this.pushTls()
      },
      publishChallenges: async (table: ChallengeTable) => {
        if (this.sequential !== null) this.sequential.acmeChallenges = new Map(table)
        if (this.workers !== null) await this.workers.setChallenges(table)
      },
    }
    const listeners = listenersOf(this.config)
    for (let i = 0; i < listeners.length; i++) {
      const acme = listeners[i].tls?.acme
      if (acme === undefined) continue
      if (!listeners.some((l) => l.tls === undefined)) logger.warn({ listener: listeners[i].address }, 'ACME: no plain listener to answer HTTP-01 challenges on (port 80 in production); issuance will fail')
      // loaded only with an ACME listener (see loadAcme)
      const listener = new (loadAcme())(i, acme, hooks)
      this.acme.push(listener)
      await listener.start()
    }
  }

  /** Send the current certificates and ticket keys to every thread. */
  private pushTls (): void {
    if (this.tls === null) return
    if (this.sequential !== null) applyTlsMaterial(this.sequential, this.tls.material)
    if (this.workers !== null) this.workers.setTls(this.tls.material)
  }

  static async start (config: Config): Promise<Switchyard> {
    const lb = new Switchyard(config)
    if (config.cluster !== undefined) {
      lb.cluster = await ClusterNode.start(config, lb.state, listenersOf(config)[0].address, () => lb.table)
      if (lb.clusterChannel !== null) lb.cluster.listen(lb.clusterChannel)
    }
    const listeners = listenersOf(config)
    try {
      await lb.startAcme()
      for (let i = 0; i < listeners.length; i++) {
        const { host, port } = parseHostPort(listeners[i].address)
        const server = lb.servers[i]
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen({ host, port, backlog: 4096 }, () => {
            server.off('error', reject)
            resolve()
          })
        })
        const bound = server.address() as net.AddressInfo
        lb.addresses.push({ host: bound.address, port: bound.port })
      }
    } catch (err) {
      await lb.stop(0)
      throw err
    }
    lb.address = lb.addresses[0]
    const firstTls = listeners.findIndex((l) => l.tls !== undefined)
    const tlsPort = firstTls === -1 ? 0 : lb.addresses[firstTls].port
    if (lb.sequential !== null) installListeners(lb.sequential, listeners, null, tlsPort)
    else {
      // accept only once the workers can serve: connections that arrive meanwhile wait in `early`
      lb.workers = new WorkerPool(config.workers, config, lb.state, lb.table, lb.stickySecret, lb.cacheInit, lb.tls?.material ?? null, tlsPort, lb.clusterChannel)
      await lb.workers.ready()
      for (const { socket, listener } of lb.early) lb.workers.dispatch(socket, listener)
      lb.early = []
    }
    lb.takeAccepts()
    // ordering starts only now: an HTTP-01 validation can reach any thread, and every thread exists
    for (const a of lb.acme) a.begin()
    for (const u of lb.table) {
      if (u.tls !== undefined && u.tls !== null && !u.tls.verify) logger.warn({ upstream: u.address }, 'upstream TLS certificate verification is off (upstreams[].tls.verify: false): anyone on the path can impersonate this upstream')
    }
    if (lb.tls !== null) {
      lb.ticketTimer = setInterval(() => { lb.tls?.rotateTicketKeys(); lb.pushTls() }, TICKET_KEY_ROTATION_MS)
      lb.ticketTimer.unref()
      for (const c of lb.tls.status()) if (c.expired) logger.warn({ listener: c.listener, certificate: c.source, notAfter: c.notAfter }, 'certificate has expired')
    }
    lb.stopMemoryRelease = startMemoryRelease(config.memoryReleaseIntervalMs)
    const bound = { address: lb.address.host, port: lb.address.port, family: lb.address.host.includes(':') ? 'IPv6' : 'IPv4' }
    // every pool's active checker shares its probes through the cluster (when on)
    lb.health.setCheckerHook((checker) => lb.clusterProbes(checker))
    lb.health.start()
    if (config.admin !== undefined) {
      try {
        lb.admin = await loadAdmin()(lb)
      } catch (err) {
        await lb.stop(0)
        throw err
      }
    }
    logger.info({
      address: `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`,
      listeners: listeners.map((l, i) => ({ address: formatAddress(lb.addresses[i]), tls: l.tls !== undefined, httpsRedirect: l.httpsRedirect })),
      mode: config.workers === 0 ? 'sequential' : 'workers',
      workers: config.workers,
      upstreams: lb.table.map((u) => u.pool === 'default' ? u.address : `${u.pool}/${u.address}`),
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

  /** The certificates in force (empty without TLS). */
  certificateStatus (): CertificateStatus[] {
    return this.tls === null ? [] : this.tls.status()
  }

  /** Listeners as configured and bound. */
  listenerStatus (): Array<{ name: string, address: string, tls: boolean, httpsRedirect: boolean }> {
    return listenersOf(this.config).map((l, i) => ({ name: listenerName(l), address: this.addresses[i] !== undefined ? formatAddress(this.addresses[i]) : l.address, tls: l.tls !== undefined, httpsRedirect: l.httpsRedirect }))
  }

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
    const sameListen = sameBindings(next, this.config)
    if (!sameListen) restartNeeded.push('listen')
    if (next.workers !== this.config.workers) restartNeeded.push('workers')
    if (next.workerMaxYoungGenerationSizeMb !== this.config.workerMaxYoungGenerationSizeMb) restartNeeded.push('workerMaxYoungGenerationSizeMb')
    const slots = this.state.rateTableSlots
    if (next.rateLimit !== undefined && slots !== 0 && next.rateLimit.tableSize !== slots) restartNeeded.push('rateLimit.tableSize')
    else if ((next.rateLimit?.tableSize ?? 0) !== (this.config.rateLimit?.tableSize ?? 0) && slots === 0) restartNeeded.push('rateLimit.tableSize')
    // the table is allocated at start: a limit counts in the table that exists
    const effective: Config = { ...next, listen: sameListen ? next.listen : this.config.listen, workers: this.config.workers, rateLimit: next.rateLimit === undefined ? undefined : { ...next.rateLimit, tableSize: slots !== 0 ? slots : next.rateLimit.tableSize } }
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
    if (effective.memoryReleaseIntervalMs !== this.config.memoryReleaseIntervalMs) {
      this.stopMemoryRelease()
      this.stopMemoryRelease = startMemoryRelease(effective.memoryReleaseIntervalMs)
    }
    const table = buildUpstreamTable(effective, this.state, this.table)
    resetMovedRouteCounters(this.state, this.config, effective)
    warnShadowedRoutes(effective)
    this.config = effective
    this.table = table
    const logFailure = configureLog(effective.log, effective.workers === 0)
    if (logFailure !== null) logger.error({ err: logFailure }, 'the access log stays where it was')
    const tlsPort = this.tlsPort()
    if (this.sequential !== null) applyConfig(this.sequential, effective, table, { stickySecret: this.stickySecret, cache: this.cacheInit, tls: null, tlsPort, leases: this.sequentialLeases })
    if (this.workers !== null) this.workers.setConfig(effective, table)
    // certificate files are re-read on every reload (rotated files): one that fails keeps the old ones
    const warnings = this.tls !== null ? this.tls.reload(effective) : []
    for (const w of warnings) logger.error({ code: 'SWY_ERR_TLS_CERTIFICATE' satisfies ErrorCode, problem: w }, 'certificate reload failed')
    this.pushTls()
    this.health.apply(effective, table)
    if (this.cluster !== null) {
      this.cluster.setRateLimit(effective)
      this.cluster.setHealth(effective.healthCheck.active ?? null)
    }
    logger.info({ upstreams: table.map((u) => u.pool === 'default' ? u.address : `${u.pool}/${u.address}`), routes: effective.routes?.length ?? 0, restartNeeded }, 'configuration reloaded')
    return { applied: true, restartNeeded, warnings }
  }

  /** The bound port of the first TLS listener, 0 when there is none. */
  private tlsPort (): number {
    const i = listenersOf(this.config).findIndex((l) => l.tls !== undefined)
    return i === -1 || this.addresses[i] === undefined ? 0 : this.addresses[i].port
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
      const closed = Promise.all(this.servers.map(async (server) => await new Promise<void>((resolve) => {
        if (!server.listening) { resolve(); return }
        server.close(() => resolve())
      })))
      if (this.ticketTimer !== null) clearInterval(this.ticketTimer)
      this.stopMemoryRelease()
      for (const a of this.acme) a.stop()
      for (const { socket } of this.early) socket.destroy()
      this.early = []
      await this.health.stop()
      if (this.sequential !== null) {
        const ctx = this.sequential
        drainThread(ctx)
        const deadline = Date.now() + drainMs
        // the accepted connections include those still in a TLS handshake or a PROXY header (not yet clients)
        while ((ctx.clients.size > 0 || openAccepted(ctx) > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
        for (const c of ctx.clients) c.destroy()
        destroyAccepted(ctx)
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
