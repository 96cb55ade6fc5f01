/**
 * Redis's clock as seen from this instance: offset = Redis TIME - Date.now(),
 * published in H_CLUSTER_CLOCK_OFFSET for every thread (windows are aligned on
 * Redis's clock). Each reply that carries Redis's time is a sample: the true
 * offset lies within [redisNow - receivedAt, redisNow - sentAt], so the
 * midpoint is off by at most half the round trip. A busy event loop stretches
 * round trips (the reply waits to be read), so, as NTP does, the sample with
 * the shortest round trip wins.
 *
 * The best sample is taken over a sliding span of two epochs of EPOCH_MS (the
 * current one and the one before), so it is never older than 2 × EPOCH_MS
 * (clocks drift), and an old best is replaced by the best of the samples
 * since, never by whichever came next: a single slow sample (a round trip of
 * 100 ms read while the loop was busy, off by up to 50 ms) would move every
 * window boundary by that much, and leases of an ended window would be spent
 * in the next one (more admitted in it than the limit).
 */
import type { SharedState } from '../shared/state'
import { H_CLUSTER_CLOCK_OFFSET } from '../shared/layout'

/** Length of one epoch of samples (ms): the best offset is the best of the current and the previous epoch. */
export const EPOCH_MS = 5000
/** A newer sample this much slower than the best still wins (ms): it tracks drift. */
const RTT_TOLERANCE_MS = 1

export class RedisClock {
  private readonly state: SharedState
  /** The best (shortest round trip) sample of the current epoch, and of the one before; Infinity: none. */
  private currentRtt = Infinity
  private currentOffset = 0
  private previousRtt = Infinity
  private previousOffset = 0
  /** When the current epoch began (ms, the samples' clock); -1 before the first sample. */
  private epochStart = -1

  constructor (state: SharedState) {
    this.state = state
  }

  sample (sentAt: number, redisNowMs: number, receivedAt: number): void {
    const rtt = receivedAt - sentAt
    if (rtt < 0) return
    if (this.epochStart === -1) this.epochStart = receivedAt
    if (receivedAt - this.epochStart >= EPOCH_MS) {
      // a gap of more than an epoch leaves nothing recent to keep
      const gap = receivedAt - this.epochStart >= 2 * EPOCH_MS
      this.previousRtt = gap ? Infinity : this.currentRtt
      this.previousOffset = this.currentOffset
      this.currentRtt = Infinity
      this.epochStart = receivedAt
    }
    if (rtt <= this.currentRtt + RTT_TOLERANCE_MS || this.currentRtt === Infinity) {
      this.currentRtt = Math.min(rtt, this.currentRtt)
      this.currentOffset = Math.round(redisNowMs - (sentAt + receivedAt) / 2)
    }
    // the current epoch's best, unless the previous epoch had a clearly shorter round trip
    const offset = this.previousRtt + RTT_TOLERANCE_MS < this.currentRtt ? this.previousOffset : this.currentOffset
    this.state.storeHeader(H_CLUSTER_CLOCK_OFFSET, offset)
  }

  /** The offset in force (ms). */
  get offsetMs (): number {
    return this.state.header(H_CLUSTER_CLOCK_OFFSET)
  }
}
