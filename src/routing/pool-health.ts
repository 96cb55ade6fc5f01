/**
 * Health checking per pool (primary only): each pool has its own active
 * checker (its healthCheck.active: path, interval, expected statuses) and its
 * own passive reviver (its cooldown), over its own upstreams. Applying a new
 * config keeps a pool's checker and reviver while the pool stays, so an
 * upstream that stays in its pool keeps its streaks; a pool that leaves has
 * its checks stopped.
 */
import type { Config } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { ActiveHealthChecker } from '../health/active'
import { PassiveReviver } from '../health/passive'
import { poolSpecs } from './pools'

interface PoolChecks {
  checker: ActiveHealthChecker | null
  reviver: PassiveReviver
}

export class PoolHealth {
  private readonly state: SharedState
  private readonly pools = new Map<string, PoolChecks>()
  private running = false
  /** Called with every active checker, existing and future (the cluster shares probes through it). */
  private checkerHook: ((checker: ActiveHealthChecker) => void) | null = null

  constructor (state: SharedState) {
    this.state = state
  }

  /** Start (or follow) the checks of every pool of `config` over `table`. */
  apply (config: Config, table: readonly UpstreamEntry[]): void {
    const seen = new Set<string>()
    for (const spec of poolSpecs(config)) {
      seen.add(spec.name)
      const entries = table.filter((e) => e.pool === spec.name)
      const active = spec.healthCheck.active
      let checks = this.pools.get(spec.name)
      if (checks === undefined) {
        checks = { checker: null, reviver: new PassiveReviver(spec.healthCheck.passive, this.state, entries, active !== undefined) }
        this.pools.set(spec.name, checks)
        if (this.running) checks.reviver.start()
      } else {
        checks.reviver.setTable(entries)
        checks.reviver.setConfig(spec.healthCheck.passive, active !== undefined)
      }
      if (active !== undefined) {
        if (checks.checker === null) {
          checks.checker = new ActiveHealthChecker(active, this.state, entries)
          if (this.checkerHook !== null) this.checkerHook(checks.checker)
          if (this.running) checks.checker.start()
        } else {
          checks.checker.setConfig(active)
          checks.checker.setTable(entries)
        }
      } else if (checks.checker !== null) {
        void checks.checker.stop()
        checks.checker = null
      }
    }
    for (const [name, checks] of this.pools) {
      if (seen.has(name)) continue
      checks.reviver.stop()
      if (checks.checker !== null) void checks.checker.stop()
      this.pools.delete(name)
    }
  }

  setCheckerHook (hook: (checker: ActiveHealthChecker) => void): void {
    this.checkerHook = hook
    for (const checks of this.pools.values()) if (checks.checker !== null) hook(checks.checker)
  }

  start (): void {
    this.running = true
    for (const checks of this.pools.values()) {
      checks.reviver.start()
      if (checks.checker !== null) checks.checker.start()
    }
  }

  async stop (): Promise<void> {
    this.running = false
    const stopping: Array<Promise<void>> = []
    for (const checks of this.pools.values()) {
      checks.reviver.stop()
      if (checks.checker !== null) stopping.push(checks.checker.stop())
    }
    await Promise.all(stopping)
  }
}
