/**
 * The one Redis connection of an instance (primary thread only), with a
 * per-call timeout and a circuit breaker, so that no request ever waits on a
 * Redis that is down, unreachable or hung (SIGSTOP: the socket stays open and
 * nothing answers):
 *
 *   closed --(BREAKER_FAILURES calls in a row fail or time out, or the connection drops)--> open
 *   open   --(BREAKER_BACKOFF_MS later: one PING, with the same timeout)--> closed if it answers, open again if not
 *
 * While open, call() rejects at once without touching the socket. `up` is
 * "closed"; every change is reported once through onChange (the node logs
 * it, counts degraded time and flips the shared mode word).
 *
 * Client: ioredis. Over node-redis it gives what this needs without extra
 * code: a per-command timeout (`commandTimeout`), an offline queue that can be
 * switched off (a command while disconnected fails at once instead of
 * waiting for a reconnect), `defineCommand` (EVALSHA with the EVAL fallback on
 * NOSCRIPT), and the same API on Redis Cluster. It is loaded only when the
 * `cluster` section is set (dynamic import): a single instance never loads it.
 */
import { readFileSync } from 'node:fs'
import type { ClusterConfig } from '../config/types'
import type { Redis, RedisOptions } from 'ioredis'
import * as scripts from './scripts'

/** Consecutive failed calls that open the breaker. */
export const BREAKER_FAILURES = 3
/** How long the breaker stays open before one probe. */
export const BREAKER_BACKOFF_MS = 1000

/** The scripts as ioredis commands (name -> number of KEYS). */
const COMMANDS = {
  swyFixedLease: { lua: scripts.FIXED_LEASE, keys: 1 },
  swySlidingLease: { lua: scripts.SLIDING_LEASE, keys: 1 },
  swyTokenLease: { lua: scripts.TOKEN_LEASE, keys: 1 },
  swyFixedReturn: { lua: scripts.FIXED_RETURN, keys: 1 },
  swySlidingReturn: { lua: scripts.SLIDING_RETURN, keys: 1 },
  swyTokenReturn: { lua: scripts.TOKEN_RETURN, keys: 1 },
  swyHeartbeat: { lua: scripts.HEARTBEAT, keys: 3 },
} as const

export type ScriptName = keyof typeof COMMANDS

export class RedisLink {
  private readonly client: Redis
  /** A second connection in subscriber mode (Redis requires it), made on the first subscribe(). */
  private subscriber: Redis | null = null
  private readonly timeoutMs: number
  /** Breaker closed (Redis answering). Starts false: nothing has answered yet. */
  up = false
  private failures = 0
  private openUntil = 0
  private probing = false
  private readonly timer: NodeJS.Timeout
  private closed = false
  /** Calls sent to Redis (not those the open breaker refused). */
  commands = 0
  /** Called on every change of `up`, with why. */
  onChange: (up: boolean, reason: string) => void = () => {}

  private constructor (client: Redis, timeoutMs: number) {
    this.client = client
    this.timeoutMs = timeoutMs
    for (const [name, c] of Object.entries(COMMANDS)) client.defineCommand(name, { numberOfKeys: c.keys, lua: c.lua })
    client.on('error', () => { /* reported through the calls and 'close' */ })
    client.on('close', () => { this.trip('connection to Redis closed') })
    client.on('ready', () => { void this.probe() })
    this.timer = setInterval(() => { void this.probe() }, Math.min(BREAKER_BACKOFF_MS, 250))
    this.timer.unref()
  }

  static async connect (config: ClusterConfig['redis']): Promise<RedisLink> {
    const { Redis: IORedis } = await import('ioredis')
    const options: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      commandTimeout: config.timeoutMs,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.max(200, config.timeoutMs * 10),
      // keep trying in the background; the breaker decides when calls go out
      retryStrategy: (times: number) => Math.min(50 * times, BREAKER_BACKOFF_MS),
      enableReadyCheck: false,
      autoResubscribe: false,
    }
    const tls = config.tls
    if (tls !== undefined || config.url.startsWith('rediss:')) {
      options.tls = {
        ca: tls?.caFile !== undefined ? readFileSync(tls.caFile) : undefined,
        cert: tls?.certFile !== undefined ? readFileSync(tls.certFile) : undefined,
        key: tls?.keyFile !== undefined ? readFileSync(tls.keyFile) : undefined,
        servername: tls?.servername,
        rejectUnauthorized: tls?.rejectUnauthorized ?? true,
      }
    }
    const client = new IORedis(config.url, options)
    const link = new RedisLink(client, config.timeoutMs)
    // not awaited: the balancer starts and serves with Redis unreachable
    client.connect().catch(() => {})
    return link
  }

  /** Run one script (rejects at once while the breaker is open). */
  async script (name: ScriptName, keys: string[], args: Array<string | number>): Promise<unknown> {
    if (!this.up) throw new Error('Redis circuit open')
    this.commands++
    try {
      const fn = (this.client as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>)[name]
      const reply = await fn.call(this.client, ...keys, ...args)
      this.failures = 0
      return reply
    } catch (err) {
      this.failed((err as Error).message)
      throw err
    }
  }

  /** A plain command (HSET, HDEL, ...), same rules. */
  async command (name: string, args: Array<string | number>): Promise<unknown> {
    if (!this.up) throw new Error('Redis circuit open')
    this.commands++
    try {
      const reply = await this.client.call(name, ...args)
      this.failures = 0
      return reply
    } catch (err) {
      this.failed((err as Error).message)
      throw err
    }
  }

  private failed (reason: string): void {
    if (++this.failures >= BREAKER_FAILURES) this.trip(reason)
  }

  private trip (reason: string): void {
    this.failures = 0
    this.openUntil = Date.now() + BREAKER_BACKOFF_MS
    if (!this.up) return
    this.up = false
    this.onChange(false, reason)
  }

  /** Half-open: once the backoff is over, one PING decides. */
  private async probe (): Promise<void> {
    if (this.up || this.probing || this.closed || Date.now() < this.openUntil) return
    if (this.client.status !== 'ready' && this.client.status !== 'connect') return
    this.probing = true
    try {
      this.commands++
      await this.client.ping()
      this.failures = 0
      if (!this.up && !this.closed) {
        this.up = true
        this.onChange(true, 'Redis answered')
      }
    } catch (err) {
      this.openUntil = Date.now() + BREAKER_BACKOFF_MS
    } finally {
      this.probing = false
    }
  }

  /**
   * Messages on `channel` (pub/sub: best effort, nothing waits on it). The
   * subscriber reconnects and resubscribes by itself.
   */
  subscribe (channel: string, onMessage: (message: string) => void): void {
    if (this.subscriber === null) {
      const subscriber = this.client.duplicate({ enableOfflineQueue: true, autoResubscribe: true, commandTimeout: undefined })
      subscriber.on('error', () => { /* the main link reports Redis's state */ })
      subscriber.on('message', (_channel: string, message: string) => { this.onMessage.get(_channel)?.(message) })
      this.subscriber = subscriber
    }
    this.onMessage.set(channel, onMessage)
    this.subscriber.subscribe(channel).catch(() => {})
  }

  private readonly onMessage = new Map<string, (message: string) => void>()

  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    this.up = false
    this.subscriber?.disconnect()
    // not QUIT: a hung Redis would never answer it
    this.client.disconnect()
  }

  get timeout (): number { return this.timeoutMs }
}
