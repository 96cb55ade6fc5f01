/**
 * Redis's clock as seen from this instance: offset = Redis TIME - Date.now(),
 * published in H_CLUSTER_CLOCK_OFFSET for every thread (windows are aligned on
 * Redis's clock). Each reply that carries Redis's time is a sample: the true
 * offset lies within [redisNow - receivedAt, redisNow - sentAt], so the
 * midpoint is off by at most half the round trip. A busy event loop stretches
 * round trips (the reply waits to be read), so, as NTP does, the sample with
 * the shortest round trip wins; a newer sample replaces it when it is nearly as
 * short, or when the best one is older than MAX_SAMPLE_AGE_MS (clocks drift).
 */
import type { SharedState } from '../shared/state'
import { H_CLUSTER_CLOCK_OFFSET } from '../shared/layout'

const MAX_SAMPLE_AGE_MS = 5000
/** A sample this much slower than the best still counts (ms). */
const RTT_TOLERANCE_MS = 1

export class RedisClock {
  private readonly state: SharedState
  private bestRttMs = Infinity
  private bestAt = 0

  constructor (state: SharedState) {
    this.state = state
  }

  sample (sentAt: number, redisNowMs: number, receivedAt: number): void {
    const rtt = receivedAt - sentAt
    if (rtt > this.bestRttMs + RTT_TOLERANCE_MS && receivedAt - this.bestAt < MAX_SAMPLE_AGE_MS) return
    this.bestRttMs = rtt
    this.bestAt = receivedAt
    this.state.storeHeader(H_CLUSTER_CLOCK_OFFSET, Math.round(redisNowMs - (sentAt + receivedAt) / 2))
  }

  /** The offset in force (ms). */
  get offsetMs (): number {
    return this.state.header(H_CLUSTER_CLOCK_OFFSET)
  }
}
