/**
 * Idle keep-alive connections to each upstream, per thread. LIFO, so the
 * warmest socket is reused first and the coldest ones age out. Bounded count
 * per upstream (`pool.maxIdlePerUpstream`) and idle time (`pool.idleTimeoutMs`,
 * enforced by the sweeper). A connection the upstream closes leaves the pool
 * at once ('end'/'close'), so it is never handed out for a new request.
 */
import { MAX_UPSTREAMS } from '../shared/layout'

export interface Poolable {
  /** Position in its upstream's idle stack, -1 when not idle. */
  poolIndex: number
  readonly slot: number
  readonly reusable: boolean
  destroy (): void
}

export class UpstreamPool<T extends Poolable = Poolable> {
  private readonly idle: T[][] = []
  maxIdlePerUpstream: number

  constructor (maxIdlePerUpstream: number) {
    this.maxIdlePerUpstream = maxIdlePerUpstream
    for (let i = 0; i < MAX_UPSTREAMS; i++) this.idle.push([])
  }

  /** The most recently idled live connection to `slot`, or null. */
  acquire (slot: number): T | null {
    const stack = this.idle[slot]
    while (stack.length > 0) {
      const conn = stack.pop() as T
      conn.poolIndex = -1
      if (conn.reusable) return conn
      conn.destroy()
    }
    return null
  }

  /** Keep `conn` for reuse; false when the pool is full (the caller destroys it). */
  release (conn: T): boolean {
    const stack = this.idle[conn.slot]
    if (stack.length >= this.maxIdlePerUpstream || !conn.reusable) return false
    conn.poolIndex = stack.length
    stack.push(conn)
    return true
  }

  /** Take `conn` out of its stack (it closed or timed out while idle). */
  remove (conn: T): void {
    const i = conn.poolIndex
    if (i === -1) return
    const stack = this.idle[conn.slot]
    const last = stack.pop() as T
    if (last !== conn) {
      stack[i] = last
      last.poolIndex = i
    }
    conn.poolIndex = -1
  }

  /** Close every idle connection (shutdown, or an upstream left the table). */
  drain (slot = -1): void {
    for (let s = 0; s < MAX_UPSTREAMS; s++) {
      if (slot !== -1 && s !== slot) continue
      const stack = this.idle[s]
      while (stack.length > 0) {
        const conn = stack.pop() as T
        conn.poolIndex = -1
        conn.destroy()
      }
    }
  }
}
