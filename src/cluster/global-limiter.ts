/**
 * The request path's side of global rate limits (every serving thread). A
 * check is shared memory only:
 *
 *   mode word GLOBAL  -> spend one leased unit (./lease-slots.ts): allowed; refused by
 *                        the negative cache; or pending: nothing leased here yet
 *   mode word DEGRADED -> cluster.rateLimit.onRedisFailure: local-share (a local
 *                        limiter at limit / live instances), open, closed
 *
 * A pending request does not block anything: the connection parks (phase
 * 'rateWait') and hands itself to the LeaseBroker, which sends one ask per
 * client to the primary (a BroadcastChannel message from a worker, a function
 * call in sequential mode) and wakes every parked request for that client
 * when the primary answers. They check again; a request whose ask failed
 * (Redis timeout, breaker open, or no answer within timeoutMs + ASK_MARGIN_MS)
 * gets the failure mode. So no request waits longer than about timeoutMs.
 */
import { BroadcastChannel } from 'node:worker_threads'
import type { RateLimitConfig, RedisFailureMode } from '../config/types'
import type { SharedState } from '../shared/state'
import { CLUSTER_GLOBAL, H_CLUSTER_LIVE, H_CLUSTER_MODE } from '../shared/layout'
import { RateDecision, type RateLimiter } from '../ratelimit/decision'
import { rateLimitHeaders } from '../ratelimit/headers'
import { createRateLimiter } from '../ratelimit/index'
import { LeaseSlots } from './lease-slots'
import { BREAKER_BACKOFF_MS } from './redis-link'

/** A parked request, woken once its client's ask is answered. */
export interface LeaseWaiter {
  onLease (failed: boolean): void
}

/** How much longer than timeoutMs a thread waits for the primary's answer before giving up. */
export const ASK_MARGIN_MS = 50

/** Messages between workers and the primary on the cluster channel. */
/** `policy` names the limit ('' = the top-level rateLimit; a route's limit has its scope). */
export type LeaseMessage =
  | { type: 'ask', policy: string, clientIp: string, want: number }
  | { type: 'answer', policy: string, clientIp: string, ok: boolean }

export type LeaseSend = (policy: string, clientIp: string, want: number) => void

/**
 * One per thread: the parked requests per client, and the asks in flight.
 * `send` delivers an ask to the primary; the primary's answer comes back
 * through settle().
 */
export class LeaseBroker {
  /** Keyed by policy + ' ' + client. */
  private readonly waiting = new Map<string, LeaseWaiter[]>()
  private readonly send: LeaseSend
  private readonly giveUpMs: number

  constructor (send: LeaseSend, timeoutMs: number) {
    this.send = send
    this.giveUpMs = timeoutMs + ASK_MARGIN_MS
  }

  /** A worker's broker: asks go to the primary on the named channel, answers come back on it. */
  static overChannel (channelName: string, timeoutMs: number): LeaseBroker {
    const channel = new BroadcastChannel(channelName)
    channel.unref()
    const broker = new LeaseBroker((policy, clientIp, want) => {
      channel.postMessage({ type: 'ask', policy, clientIp, want } satisfies LeaseMessage)
    }, timeoutMs)
    channel.onmessage = (event: unknown) => {
      const message = (event as { data: LeaseMessage }).data
      if (message.type === 'answer') broker.settle(message.policy, message.clientIp, message.ok)
    }
    return broker
  }

  wait (policy: string, clientIp: string, waiter: LeaseWaiter): void {
    const key = policy + ' ' + clientIp
    const list = this.waiting.get(key)
    if (list !== undefined) { list.push(waiter); return } // coalesced into the ask in flight
    const fresh = [waiter]
    this.waiting.set(key, fresh)
    this.send(policy, clientIp, 1)
    setTimeout(giveUp, this.giveUpMs, this, key, fresh).unref()
  }

  /** The primary answered for `clientIp` under `policy`: wake its parked requests (they check again). */
  settle (policy: string, clientIp: string, ok: boolean): void {
    this.wake(policy + ' ' + clientIp, ok)
  }

  private wake (key: string, ok: boolean): void {
    const list = this.waiting.get(key)
    if (list === undefined) return
    this.waiting.delete(key)
    for (const waiter of list) waiter.onLease(!ok)
  }

  /** @internal */
  expire (key: string, list: LeaseWaiter[]): void {
    if (this.waiting.get(key) === list) this.wake(key, false)
  }

  get parked (): number {
    let n = 0
    for (const list of this.waiting.values()) n += list.length
    return n
  }
}

function giveUp (broker: LeaseBroker, key: string, list: LeaseWaiter[]): void {
  broker.expire(key, list)
}

export class GlobalRateLimiter implements RateLimiter {
  readonly config: RateLimitConfig
  /** Which limit this is ('' = the top-level rateLimit). */
  readonly policy: string
  private readonly onFailure: RedisFailureMode
  private readonly state: SharedState
  private readonly leases: LeaseSlots
  private readonly broker: LeaseBroker
  /** local-share: the local limiter for the live count it was made for. */
  private share: RateLimiter | null = null
  private shareLive = 0

  constructor (config: RateLimitConfig, onFailure: RedisFailureMode, state: SharedState, broker: LeaseBroker, policy = '') {
    this.config = config
    this.policy = policy
    this.onFailure = onFailure
    this.state = state
    this.leases = new LeaseSlots(config, state, policy)
    this.broker = broker
  }

  newDecision (): RateDecision {
    return new RateDecision()
  }

  headers (decision: RateDecision): string {
    return rateLimitHeaders(decision, this.config)
  }

  check (clientIp: string, nowMs: number, out: RateDecision): boolean {
    if (out.fallback || Atomics.load(this.state.i32, H_CLUSTER_MODE) !== CLUSTER_GLOBAL) {
      out.fallback = false
      out.pending = false
      return this.degraded(clientIp, nowMs, out)
    }
    return this.leases.check(clientIp, nowMs, out)
  }

  /** Park a pending request until its client's lease question is answered. */
  wait (clientIp: string, waiter: LeaseWaiter): void {
    this.broker.wait(this.policy, clientIp, waiter)
  }

  private degraded (clientIp: string, nowMs: number, out: RateDecision): boolean {
    switch (this.onFailure) {
      case 'open':
        out.allowed = true
        out.limit = this.config.maxRequests
        out.remaining = this.config.maxRequests
        out.resetSeconds = Math.max(1, Math.ceil(this.config.windowMs / 1000))
        out.retryAfterSeconds = 0
        return true
      case 'closed':
        out.allowed = false
        out.limit = this.config.maxRequests
        out.remaining = 0
        out.resetSeconds = out.retryAfterSeconds = Math.max(1, Math.ceil(BREAKER_BACKOFF_MS / 1000))
        return false
      default:
        return this.localShare().check(clientIp, nowMs, out)
    }
  }

  /** limit / live instances (live as last known), counted in this instance's shared table. */
  private localShare (): RateLimiter {
    const live = Math.max(1, Atomics.load(this.state.i32, H_CLUSTER_LIVE))
    if (this.share === null || this.shareLive !== live) {
      const c = this.config
      const share: RateLimitConfig = {
        ...c,
        maxRequests: Math.max(1, Math.floor(c.maxRequests / live)),
        burst: c.burst === undefined ? undefined : Math.max(1, Math.floor(c.burst / live)),
      }
      this.share = createRateLimiter(share, this.state)
      this.shareLive = live
    }
    return this.share
  }
}
