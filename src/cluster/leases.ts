/**
 * The primary's side of global rate limits: asks Redis for leases, writes
 * them into shared memory (./lease-slots.ts) and hands back what goes unused.
 *
 *  - coalescing: one Redis call per client at a time; every thread's ask for
 *    that client while it runs shares its answer;
 *  - lease size: a client asking again within LEASE_HOT_MS of its last ask is
 *    hot and its next lease doubles (up to MAX_LEASE); one that has been quiet
 *    for LEASE_QUIET_MS leases 1 again, i.e. exact per request. Redis bounds
 *    every grant by (what is left) / (2 x live instances) (./scripts.ts);
 *  - negative cache: a grant of 0 marks the slot denied until Redis's retry
 *    time; every thread refuses locally until then;
 *  - return: a lease nobody spent from for a whole sweep, and what is left of
 *    a lease whose period ended, go back to Redis, so no allowance stays
 *    stranded on an instance whose client went elsewhere.
 */
import type { RateLimitConfig } from '../config/types'
import type { LeaseSlots } from './lease-slots'
import type { RedisLink, ScriptName } from './redis-link'

export const LEASE_HOT_MS = 100
export const LEASE_QUIET_MS = 1000
export const MAX_LEASE = 256
/** How often unspent leases are looked at. */
export const SWEEP_MS = 200

interface ClientLease {
  /** Next lease size. */
  size: number
  lastAskAt: number
  /** Period of the latest grant, and what was held there at the last sweep. */
  period: number
  lastHeld: number
}

export interface LeaseReply {
  granted: number
  period: number
  retryMs: number
  redisNowMs: number
}

export class LeaseManager {
  private readonly link: RedisLink
  private readonly slots: LeaseSlots
  private readonly config: RateLimitConfig
  private readonly keyPrefix: string
  private readonly policy: string
  private readonly lease: ScriptName
  private readonly giveBack: ScriptName
  private readonly live: () => number
  private readonly onClock: (sentAt: number, redisNowMs: number, receivedAt: number) => void
  /** Called after units went back to Redis in the client's current period (the node tells the other instances). */
  onReturned: (clientIp: string) => void = () => {}
  private readonly inflight = new Map<string, Promise<boolean>>()
  private readonly clients = new Map<string, ClientLease>()
  private readonly timer: NodeJS.Timeout
  /** Units handed back to Redis (status). */
  returned = 0

  /** `policy` names the limit ('' = the top-level rateLimit; a route's has its scope): its own Redis keys. */
  constructor (link: RedisLink, slots: LeaseSlots, config: RateLimitConfig, keyPrefix: string, live: () => number, onClock: (sentAt: number, redisNowMs: number, receivedAt: number) => void, policy = '') {
    this.link = link
    this.slots = slots
    this.config = config
    this.keyPrefix = keyPrefix
    this.policy = `${policy === '' ? '' : policy + ':'}${config.algorithm}:${config.maxRequests}:${config.windowMs}:${config.burst ?? ''}`
    this.lease = config.algorithm === 'token-bucket' ? 'swyTokenLease' : config.algorithm === 'sliding-window' ? 'swySlidingLease' : 'swyFixedLease'
    this.giveBack = config.algorithm === 'token-bucket' ? 'swyTokenReturn' : config.algorithm === 'sliding-window' ? 'swySlidingReturn' : 'swyFixedReturn'
    this.live = live
    this.onClock = onClock
    this.timer = setInterval(() => { this.sweep() }, SWEEP_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /** `<prefix>rl:{client}:[<policy>:]<algorithm:limit:window:burst>`: a changed limit starts on a fresh key. */
  keyOf (clientIp: string): string {
    return `${this.keyPrefix}rl:{${clientIp}}:${this.policy}`
  }

  /**
   * Get `clientIp` a lease (or a denial) into shared memory. Resolves true
   * when Redis answered (the slot now holds units or a denial), false when it
   * did not (timeout, breaker open): the asking requests apply the failure mode.
   */
  async ask (clientIp: string, want: number): Promise<boolean> {
    const running = this.inflight.get(clientIp)
    if (running !== undefined) return await running
    const call = this.fetch(clientIp, want)
    this.inflight.set(clientIp, call)
    try {
      return await call
    } finally {
      this.inflight.delete(clientIp)
    }
  }

  private async fetch (clientIp: string, want: number): Promise<boolean> {
    const now = Date.now()
    let entry = this.clients.get(clientIp)
    if (entry === undefined) {
      entry = { size: 1, lastAskAt: 0, period: 0, lastHeld: 0 }
      this.clients.set(clientIp, entry)
    } else if (now - entry.lastAskAt < LEASE_HOT_MS) {
      entry.size = Math.min(MAX_LEASE, entry.size * 2)
    } else if (now - entry.lastAskAt > LEASE_QUIET_MS) {
      entry.size = 1
    }
    entry.lastAskAt = now
    const size = Math.max(1, Math.min(MAX_LEASE, Math.max(want, entry.size)))
    let reply: LeaseReply
    try {
      reply = await this.call(clientIp, size)
    } catch {
      return false
    }
    const done = Date.now()
    this.onClock(now, reply.redisNowMs, done)
    const previous = entry.period
    entry.period = reply.period
    entry.lastHeld = 0
    const leftover = this.slots.grant(clientIp, done, reply.period, reply.granted, reply.retryMs)
    if (leftover === -1) {
      this.handBack(clientIp, reply.granted, reply.period)
    } else if (leftover > 0) {
      this.handBack(clientIp, leftover, previous)
    }
    return true
  }

  /** One lease script call: exposed for tests of the arithmetic against a real Redis. */
  async call (clientIp: string, want: number): Promise<LeaseReply> {
    const c = this.config
    const r = await this.link.script(this.lease, [this.keyOf(clientIp)], [c.maxRequests, c.windowMs, want, Math.max(1, this.live()), c.burst ?? c.maxRequests]) as number[]
    return { granted: Number(r[0]), period: Number(r[1]), retryMs: Number(r[2]), redisNowMs: Number(r[3]) }
  }

  private handBack (clientIp: string, count: number, period: number): void {
    if (count <= 0) return
    const c = this.config
    this.returned += count
    this.link.script(this.giveBack, [this.keyOf(clientIp)], [count, period, c.windowMs, c.maxRequests, c.burst ?? c.maxRequests]).then((back) => {
      if (Number(back) === 1) this.onReturned(clientIp)
    }, () => {})
  }

  /**
   * Another instance handed units of `clientIp` back: forget the denial, so
   * the next request asks Redis again instead of being refused until the
   * window's end while allowance sits unused.
   */
  forgetDenial (clientIp: string): void {
    this.slots.forgetDenial(clientIp, Date.now())
  }

  /** Hand back leases nobody spent from since the last sweep, and those of ended periods. */
  private sweep (): void {
    const now = Date.now()
    for (const [clientIp, entry] of this.clients) {
      if (this.inflight.has(clientIp)) continue
      const held = this.slots.held(clientIp, now, entry.period)
      if (held > 0 && held === entry.lastHeld) {
        this.handBack(clientIp, this.slots.takeBack(clientIp, now, entry.period), entry.period)
        entry.lastHeld = 0
        continue
      }
      entry.lastHeld = held
      if (held === 0 && now - entry.lastAskAt > Math.max(LEASE_QUIET_MS, this.config.windowMs * 2)) this.clients.delete(clientIp)
    }
  }
}
