/**
 * One switchyard instance's membership of a cluster (config.cluster), on the
 * primary thread. It owns the Redis link (./redis-link.ts) and:
 *
 *  - global rate limits: answers the serving threads' lease asks through the
 *    LeaseManager (./leases.ts), one BroadcastChannel to the workers or a
 *    function call in sequential mode;
 *  - failure modes: flips H_CLUSTER_MODE when the breaker opens or closes,
 *    logs each switch once and counts the degraded time;
 *  - membership: every heartbeatMs one script call writes this instance's
 *    entry and reads the live ones (an instance silent for 3 heartbeats is
 *    dropped), the cluster-wide admin states (drains) and the shared health
 *    results; H_CLUSTER_LIVE follows the live count;
 *  - drains: an admin drain/enable is written to Redis keyed by the upstream's
 *    address, so every instance applies it at its next heartbeat;
 *  - shared health (./shared-health.ts).
 *
 * Keys: <prefix>{cluster}:members | :admin | :health (one hash tag: one Redis
 * Cluster slot for the heartbeat script), <prefix>rl:{client}:... for limits.
 */
import { hostname } from 'node:os'
import { BroadcastChannel } from 'node:worker_threads'
import type { ActiveHealthConfig, ClusterConfig, Config, RateLimitConfig } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { ADMIN_DRAINING, ADMIN_ENABLED, CLUSTER_DEGRADED, CLUSTER_GLOBAL, H_CLUSTER_LIVE, H_CLUSTER_MODE, U_ADMIN_STATE } from '../shared/layout'
import { logger } from '../log'
import { version } from '../version'
import { RedisLink } from './redis-link'
import { LeaseManager } from './leases'
import { LeaseSlots } from './lease-slots'
import { LeaseBroker, type LeaseMessage } from './global-limiter'
import { SharedHealth, type PublishedHealth } from './shared-health'
import { RedisClock } from './clock'

/** Heartbeats an instance may miss before it is dropped. */
export const MISSED_HEARTBEATS = 3
/** How long start() waits for Redis before serving in the failure mode. */
const FIRST_CONTACT_MS = 1000

export interface ClusterMember {
  id: string
  address: string
  version: string
  startedAt: string
  /** ms since its last heartbeat, on Redis's clock. */
  lastSeenMs: number
}

export interface ClusterStatusJson {
  instanceId: string
  redisUp: boolean
  mode: 'global' | 'degraded'
  scope: 'global' | 'local'
  onRedisFailure: string
  degradedSeconds: number
  redisCommands: number
  leasesReturned: number
  instances: ClusterMember[]
  /** Upstream addresses this instance actively probes (shared health). */
  probing: string[]
}

/** The part of the /metrics registry (src/admin/prometheus.ts) the cluster uses. */
export interface MetricsRegistry {
  gauge (name: string, help: string, labelNames: string[], collect: (view: unknown, emit: (labels: Record<string, string>, value: number) => void) => void): void
  counter (name: string, help: string, labelNames: string[], collect: (view: unknown, emit: (labels: Record<string, string>, value: number) => void) => void): void
}

/** What the primary's hooks need from a node (admin routes, status, metrics, the prober). */
export interface ClusterHooks {
  publishAdminState (address: string, draining: boolean): void
  status (): ClusterStatusJson
  registerMetrics (registry: MetricsRegistry): void
  shouldProbe (entry: UpstreamEntry): boolean
  onProbeResult (entry: UpstreamEntry, status: number, healthy: boolean): void
}

export class ClusterNode implements ClusterHooks {
  readonly instanceId: string
  readonly config: ClusterConfig
  private readonly state: SharedState
  private readonly link: RedisLink
  private readonly log = logger.child({ component: 'cluster' })
  /** Lease managers by policy ('' = the top-level rateLimit). */
  private leases = new Map<string, LeaseManager>()
  private channel: BroadcastChannel | null = null
  private heartbeat: NodeJS.Timeout | null = null
  private members: ClusterMember[] = []
  private readonly identity: string
  private readonly keys: { members: string, admin: string, health: string, returned: string }
  private table: () => readonly UpstreamEntry[]
  private readonly health: SharedHealth
  private readonly clock: RedisClock
  /** Drains/enables written locally whose write to Redis has not succeeded yet. */
  private readonly pendingAdmin = new Map<string, string>()
  private degradedSince: number
  private degradedMs = 0
  private lastHeartbeatOk = 0
  private stopped = false

  private constructor (config: Config, state: SharedState, link: RedisLink, listen: string, table: () => readonly UpstreamEntry[]) {
    const cluster = config.cluster as ClusterConfig
    this.config = cluster
    this.state = state
    this.link = link
    this.table = table
    this.instanceId = cluster.instanceId ?? `${hostname()}:${listen.slice(listen.lastIndexOf(':') + 1)}:${process.pid}`
    this.identity = JSON.stringify({ address: listen, version, startedAt: new Date().toISOString() })
    const p = cluster.redis.keyPrefix
    this.keys = { members: `${p}{cluster}:members`, admin: `${p}{cluster}:admin`, health: `${p}{cluster}:health`, returned: `${p}{cluster}:returned` }
    this.clock = new RedisClock(state)
    this.health = new SharedHealth(this.instanceId, cluster.health.probeReplicas, state, this.log)
    this.degradedSince = Date.now()
    link.onChange = (up, reason) => { this.onRedis(up, reason) }
    this.setRateLimit(config)
    this.setHealth(config.healthCheck.active ?? null)
    // units handed back anywhere end every instance's denial of that client (no allowance stranded)
    link.subscribe(this.keys.returned, (message) => {
      const sep = message.indexOf(' ')
      this.leases.get(message.slice(0, sep))?.forgetDenial(message.slice(sep + 1))
    })
  }

  /**
   * Before the workers start: the mode word says degraded until Redis first
   * answers, and live = 1.
   */
  static prepare (state: SharedState): void {
    state.storeHeader(H_CLUSTER_MODE, CLUSTER_DEGRADED)
    state.storeHeader(H_CLUSTER_LIVE, 1)
  }

  /** Connect (without failing: an unreachable Redis means the failure mode) and start the heartbeat. */
  static async start (config: Config, state: SharedState, listen: string, table: () => readonly UpstreamEntry[]): Promise<ClusterNode> {
    const cluster = config.cluster as ClusterConfig
    const link = await RedisLink.connect(cluster.redis)
    const node = new ClusterNode(config, state, link, listen, table)
    const deadline = Date.now() + FIRST_CONTACT_MS
    while (!link.up && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    if (!link.up) node.log.warn({ url: redactUrl(cluster.redis.url), onRedisFailure: cluster.rateLimit.onRedisFailure }, 'Redis unreachable at start: serving with the failure mode until it answers')
    await node.beat()
    node.heartbeat = setInterval(() => { void node.beat() }, cluster.heartbeatMs)
    node.heartbeat.unref()
    return node
  }

  /** Worker mode: answer asks from the workers on this channel. */
  listen (channelName: string): void {
    const channel = new BroadcastChannel(channelName)
    channel.unref()
    channel.onmessage = (event: unknown) => {
      const message = (event as { data: LeaseMessage }).data
      if (message.type !== 'ask') return
      void this.ask(message.policy, message.clientIp, message.want).then((ok) => {
        if (!this.stopped) channel.postMessage({ type: 'answer', policy: message.policy, clientIp: message.clientIp, ok } satisfies LeaseMessage)
      })
    }
    this.channel = channel
  }

  /** Sequential mode: a broker for the primary's own request path. */
  static sequentialBroker (node: () => ClusterNode | null, timeoutMs: number): LeaseBroker {
    const broker: LeaseBroker = new LeaseBroker((policy, clientIp, want) => {
      const current = node()
      const answer = current === null ? Promise.resolve(false) : current.ask(policy, clientIp, want)
      void answer.then((ok) => { broker.settle(policy, clientIp, ok) })
    }, timeoutMs)
    return broker
  }

  async ask (policy: string, clientIp: string, want: number): Promise<boolean> {
    const leases = this.leases.get(policy)
    if (leases === undefined || !this.link.up) return false
    return await leases.ask(clientIp, want)
  }

  /** The limits (re)applied: global leases for each (the top-level rateLimit is policy ''), or none. */
  setRateLimit (config: Config): void {
    for (const manager of this.leases.values()) manager.stop()
    this.leases.clear()
    if (this.config.rateLimit.scope !== 'global' || this.state.rateTableSlots === 0) return
    for (const [policy, rl] of globalLimits(config)) {
      const manager = new LeaseManager(this.link, new LeaseSlots(rl, this.state, policy), rl, this.config.redis.keyPrefix,
        () => Atomics.load(this.state.i32, H_CLUSTER_LIVE), (sentAt, redisNow, receivedAt) => { this.clock.sample(sentAt, redisNow, receivedAt) }, policy)
      manager.onReturned = (clientIp) => { this.link.command('PUBLISH', [this.keys.returned, policy + ' ' + clientIp]).catch(() => {}) }
      this.leases.set(policy, manager)
    }
  }

  setHealth (active: ActiveHealthConfig | null): void {
    this.health.setActive(this.config.health.share ? active : null)
  }

  private onRedis (up: boolean, reason: string): void {
    const now = Date.now()
    const failure = this.config.rateLimit.onRedisFailure
    if (up) {
      this.degradedMs += now - this.degradedSince
      this.state.storeHeader(H_CLUSTER_MODE, CLUSTER_GLOBAL)
      this.log.info({ reason, degradedMs: now - this.degradedSince }, 'Redis is answering: rate limits count across the cluster again')
      void this.beat()
    } else {
      this.degradedSince = now
      this.state.storeHeader(H_CLUSTER_MODE, CLUSTER_DEGRADED)
      this.log.warn({ reason, onRedisFailure: failure, live: this.state.header(H_CLUSTER_LIVE) }, `Redis is down or not answering: rate limits now ${failure === 'local-share' ? 'counted locally at limit / live instances' : failure === 'open' ? 'open (every request admitted)' : 'closed (every request refused)'}`)
    }
  }

  // ---- membership, drains, shared health ----------------------------------------

  private async beat (): Promise<void> {
    if (this.stopped) return
    if (!this.link.up) { this.noHeartbeat(); return }
    try {
      for (const [address, value] of [...this.pendingAdmin]) {
        await this.link.command('HSET', [this.keys.admin, address, value])
        if (this.pendingAdmin.get(address) === value) this.pendingAdmin.delete(address)
      }
      const staleMs = MISSED_HEARTBEATS * this.config.heartbeatMs
      const started = Date.now()
      const reply = await this.link.script('swyHeartbeat', [this.keys.members, this.keys.admin, this.keys.health], [this.instanceId, this.identity, staleMs]) as [number, string[], string[], string[]]
      const now = Number(reply[0])
      this.clock.sample(started, now, Date.now())
      this.lastHeartbeatOk = Date.now()
      this.applyMembers(reply[1], now)
      this.applyAdmin(pairs(reply[2]))
      const published = new Map<string, PublishedHealth>()
      for (const [address, json] of pairs(reply[3])) {
        try { published.set(address, JSON.parse(json) as PublishedHealth) } catch { /* not ours */ }
      }
      this.health.update(this.table(), this.members.map((m) => m.id), published, now, this.clock.offsetMs)
    } catch {
      this.noHeartbeat()
    }
  }

  /** Redis cannot be reached: keep the last live count; after 3 intervals, probe everything locally. */
  private noHeartbeat (): void {
    const active = this.config.health.share ? this.table : null
    if (active === null) return
    const since = Date.now() - this.lastHeartbeatOk
    if (since > MISSED_HEARTBEATS * this.config.heartbeatMs) {
      this.health.update(this.table(), this.members.map((m) => m.id), new Map(), 0, 0)
    }
  }

  private applyMembers (flat: string[], now: number): void {
    const members: ClusterMember[] = []
    for (const [id, value] of pairs(flat)) {
      const sep = value.indexOf('|')
      const seen = Number(value.slice(0, sep))
      let info: { address?: string, version?: string, startedAt?: string } = {}
      try { info = JSON.parse(value.slice(sep + 1)) } catch { /* keep the id */ }
      members.push({ id, address: info.address ?? '', version: info.version ?? '', startedAt: info.startedAt ?? '', lastSeenMs: now - seen })
    }
    members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    const before = new Set(this.members.map((m) => m.id))
    const after = new Set(members.map((m) => m.id))
    for (const id of after) if (!before.has(id) && id !== this.instanceId) this.log.info({ instance: id, live: after.size }, 'cluster instance joined')
    for (const id of before) if (!after.has(id)) this.log.warn({ instance: id, live: after.size }, 'cluster instance dropped (missed heartbeats or stopped)')
    this.members = members
    this.state.storeHeader(H_CLUSTER_LIVE, Math.max(1, members.length))
  }

  /** Cluster-wide admin states, keyed by address (instances may list upstreams in other orders). */
  private applyAdmin (admin: Array<[string, string]>): void {
    const byAddress = new Map(admin)
    for (const entry of this.table()) {
      const wanted = byAddress.get(entry.address)
      if (wanted === undefined || this.pendingAdmin.has(entry.address)) continue
      const value = wanted === 'draining' ? ADMIN_DRAINING : ADMIN_ENABLED
      if (this.state.upstream(entry.slot, U_ADMIN_STATE) === value) continue
      this.state.storeUpstream(entry.slot, U_ADMIN_STATE, value)
      this.log.info({ upstream: entry.address, id: entry.id, draining: value === ADMIN_DRAINING }, value === ADMIN_DRAINING ? 'upstream drained cluster-wide (by another instance)' : 'upstream enabled cluster-wide (by another instance)')
    }
  }

  publishAdminState (address: string, draining: boolean): void {
    const value = draining ? 'draining' : 'enabled'
    this.pendingAdmin.set(address, value)
    if (!this.link.up) return // written by the next heartbeat that reaches Redis
    this.link.command('HSET', [this.keys.admin, address, value]).then(() => {
      if (this.pendingAdmin.get(address) === value) this.pendingAdmin.delete(address)
    }, () => {})
  }

  shouldProbe (entry: UpstreamEntry): boolean {
    return !this.config.health.share || this.health.shouldProbe(entry)
  }

  onProbeResult (entry: UpstreamEntry, status: number, healthy: boolean): void {
    if (!this.config.health.share || !this.link.up) return
    const result: PublishedHealth = { h: healthy ? 1 : 0, s: status, at: Date.now() + this.clock.offsetMs, by: this.instanceId }
    this.link.command('HSET', [this.keys.health, entry.address, JSON.stringify(result)]).catch(() => {})
  }

  // ---- reporting ------------------------------------------------------------------

  degradedSeconds (): number {
    const current = this.link.up ? 0 : Date.now() - this.degradedSince
    return (this.degradedMs + current) / 1000
  }

  status (): ClusterStatusJson {
    return {
      instanceId: this.instanceId,
      redisUp: this.link.up,
      mode: this.state.header(H_CLUSTER_MODE) === CLUSTER_GLOBAL ? 'global' : 'degraded',
      scope: this.config.rateLimit.scope,
      onRedisFailure: this.config.rateLimit.onRedisFailure,
      degradedSeconds: this.degradedSeconds(),
      redisCommands: this.link.commands,
      leasesReturned: [...this.leases.values()].reduce((sum, m) => sum + m.returned, 0),
      instances: this.members,
      probing: this.health.probedAddresses,
    }
  }

  /** The cluster families of /metrics, collected at scrape time (src/admin/prometheus.ts registry). */
  registerMetrics (registry: MetricsRegistry): void {
    registry.gauge('switchyard_cluster_redis_up', '1 when Redis answers (global rate limits), 0 while the failure mode applies.', [],
      (_view, emit) => { emit({}, this.link.up ? 1 : 0) })
    registry.counter('switchyard_cluster_degraded_seconds_total', 'Time spent with Redis down or not answering.', [],
      (_view, emit) => { emit({}, this.degradedSeconds()) })
    registry.gauge('switchyard_cluster_instances', 'Live instances in the cluster as last known.', [],
      (_view, emit) => { emit({}, this.state.header(H_CLUSTER_LIVE)) })
    registry.counter('switchyard_cluster_redis_calls_total', 'Calls this instance sent to Redis (scripts, heartbeats, PINGs).', [],
      (_view, emit) => { emit({}, this.link.commands) })
  }

  setTable (table: () => readonly UpstreamEntry[]): void {
    this.table = table
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.heartbeat !== null) clearInterval(this.heartbeat)
    for (const manager of this.leases.values()) manager.stop()
    this.channel?.close()
    // leave at once rather than after 3 missed heartbeats
    if (this.link.up) await this.link.command('HDEL', [this.keys.members, this.instanceId]).catch(() => {})
    await this.link.close()
  }
}

/** Every limit that counts across the cluster, by policy: the top-level rateLimit is ''. */
export function globalLimits (config: Config): Array<[string, RateLimitConfig]> {
  const out: Array<[string, RateLimitConfig]> = []
  if (config.rateLimit !== undefined) out.push(['', config.rateLimit])
  return out
}

function pairs (flat: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([String(flat[i]), String(flat[i + 1])])
  return out
}

/** The URL without its password, for logs. */
function redactUrl (url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')
}
