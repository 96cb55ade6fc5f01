/**
 * One coarse timer per thread instead of one timer per request: every
 * connection that can time out carries a `deadline` (ms since the Unix epoch,
 * 0 = none), and a single interval checks them. Setting a deadline is a field
 * write, so a request costs no timer churn (undici's fast timers make the same
 * trade). Precision is one tick, a tenth of the shortest timeout.
 */

export interface Expirable {
  deadline: number
  onDeadline (now: number): void
}

export class DeadlineSweeper {
  private readonly items = new Set<Expirable>()
  private timer: NodeJS.Timeout | null = null
  private tickMs: number
  /** Date.now() at the last sweep: a clock for bookkeeping that may be a tick late, at no cost per read. */
  nowMs = Date.now()

  constructor (tickMs: number) {
    this.tickMs = tickMs
  }

  static tickFor (shortestTimeoutMs: number): number {
    return Math.max(5, Math.min(250, Math.floor(shortestTimeoutMs / 10)))
  }

  start (): void {
    if (this.timer !== null) return
    this.timer = setInterval(sweep, this.tickMs, this)
    this.timer.unref()
  }

  setTick (tickMs: number): void {
    if (tickMs === this.tickMs) return
    this.tickMs = tickMs
    if (this.timer !== null) { this.stop(); this.start() }
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  add (item: Expirable): void { this.items.add(item) }
  delete (item: Expirable): void { this.items.delete(item) }
  get size (): number { return this.items.size }

  check (now: number): void {
    for (const item of this.items) {
      const d = item.deadline
      if (d !== 0 && now >= d) item.onDeadline(now)
    }
  }
}

function sweep (sweeper: DeadlineSweeper): void {
  const now = Date.now()
  sweeper.nowMs = now
  sweeper.check(now)
}
