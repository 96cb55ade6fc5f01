/**
 * The queue of a pool's requests that found every upstream at its
 * maxConnections (HAProxy's maxconn + queue), one per pool per thread: FIFO
 * among this thread's requests. A thread cannot see another thread's waiters
 * (no messages on the data path), so a slot freed on thread A goes to A's
 * oldest waiter at once, and B's waiters take slots freed anywhere on their
 * next poll (every QUEUE_POLL_MS while they wait): FIFO per thread, not
 * globally. Bounded: at most `maxSize` waiters per thread, each for at most
 * `timeoutMs`, then 503 with Retry-After. A waiter whose client goes away
 * leaves at once. At shutdown and on reload the queue is drained with 503s.
 */
import type { SharedState } from '../shared/state'
import { P_QUEUE_WAITING, P_QUEUE_TIMEOUTS, P_QUEUE_FULL } from '../shared/layout'

/** How often waiters look for a slot freed by another thread. */
export const QUEUE_POLL_MS = 5

export type QueueRefusal = 'SWY_ERR_QUEUE_FULL' | 'SWY_ERR_QUEUE_TIMEOUT'

/** A request waiting in the queue (a client connection). */
export interface QueueWaiter {
  /** Date.now() after which it gives up. */
  queuedUntil: number
  /** A slot may be free: try to pick again. true when it is done waiting (sent on, or answered). */
  retryFromQueue (): boolean
  /** Answer 503 with `code` (timed out, or the queue is being drained); it has been removed already. */
  refuseFromQueue (code: QueueRefusal): void
}

export class RequestQueue {
  readonly maxSize: number
  readonly timeoutMs: number
  private readonly state: SharedState
  private readonly poolIndex: number
  private readonly waiters: QueueWaiter[] = []
  private timer: NodeJS.Timeout | null = null
  private wakeScheduled = false

  constructor (maxSize: number, timeoutMs: number, state: SharedState, poolIndex: number) {
    this.maxSize = maxSize
    this.timeoutMs = timeoutMs
    this.state = state
    this.poolIndex = poolIndex
    this.poll = this.poll.bind(this)
    this.wakeNow = this.wakeNow.bind(this)
  }

  get length (): number { return this.waiters.length }

  /** Seconds for Retry-After on a queue 503: as long as a waiter would have waited, at least 1. */
  get retryAfterSeconds (): number { return Math.max(1, Math.ceil(this.timeoutMs / 1000)) }

  /** Join the queue; false (counted) when it is full. */
  enqueue (waiter: QueueWaiter, nowMs: number): boolean {
    if (this.waiters.length >= this.maxSize) {
      this.state.addPool(this.poolIndex, P_QUEUE_FULL, 1)
      return false
    }
    waiter.queuedUntil = nowMs + this.timeoutMs
    this.waiters.push(waiter)
    this.state.addPool(this.poolIndex, P_QUEUE_WAITING, 1)
    if (this.timer === null) {
      this.timer = setInterval(this.poll, QUEUE_POLL_MS)
      this.timer.unref()
    }
    return true
  }

  /** Leave the queue (the client went away, or the request was answered otherwise). */
  remove (waiter: QueueWaiter): void {
    const i = this.waiters.indexOf(waiter)
    if (i === -1) return
    this.waiters.splice(i, 1)
    this.left()
  }

  /** A slot was freed on this thread: the oldest waiters try at once (from the event loop, not the releasing stack). */
  wake (): void {
    if (this.waiters.length === 0 || this.wakeScheduled) return
    this.wakeScheduled = true
    setImmediate(this.wakeNow)
  }

  /** Refuse every waiter (shutdown, or the pool was replaced by a reload). */
  drainAll (): void {
    const all = this.waiters.splice(0)
    for (const waiter of all) {
      this.left()
      waiter.refuseFromQueue('SWY_ERR_QUEUE_FULL')
    }
  }

  private wakeNow (): void {
    this.wakeScheduled = false
    this.poll()
  }

  /** Time out expired waiters, then let the oldest ones try, in order, until one finds no slot. */
  private poll (): void {
    const now = Date.now()
    const waiters = this.waiters
    // FIFO with one timeout: the oldest expire first, but a removal can leave a later one expired too
    for (let i = 0; i < waiters.length;) {
      const waiter = waiters[i]
      if (waiter.queuedUntil > now) { i++; continue }
      waiters.splice(i, 1)
      this.left()
      this.state.addPool(this.poolIndex, P_QUEUE_TIMEOUTS, 1)
      waiter.refuseFromQueue('SWY_ERR_QUEUE_TIMEOUT')
    }
    while (waiters.length > 0) {
      const head = waiters[0]
      if (!head.retryFromQueue()) break
      if (waiters[0] === head) { waiters.shift(); this.left() }
    }
  }

  private left (): void {
    this.state.addPool(this.poolIndex, P_QUEUE_WAITING, -1)
    if (this.waiters.length === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }
}
