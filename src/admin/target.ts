/**
 * What the admin API reads and controls, as an interface the primary
 * (src/primary/server.ts, `Switchyard`) implements. The admin modules import
 * this instead of the primary, so the dependency points one way: the primary
 * starts the admin listener and hands itself over as an AdminTarget.
 */
import type { Config } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import type { UpstreamStatus } from '../health/status'
import type { ClusterHooks } from '../cluster/node'

/** The cache as the purge endpoint needs it: REMOVED, ABSENT or BUSY (src/cache/store.ts). */
export interface PurgeableCache {
  tryRemove (key: string): number
}

export interface ReloadResult {
  applied: boolean
  /** Settings that changed but only take effect after a restart. */
  restartNeeded: string[]
  /** Parts that were not applied and why (e.g. a certificate file that failed: the old one is kept). */
  warnings?: string[]
}

export interface AdminTarget {
  /** The config in force (replaced whole by reload). */
  readonly config: Config
  readonly state: SharedState
  /** The upstream table in force (replaced whole by reload). */
  readonly table: readonly UpstreamEntry[]
  /** Date.now() when the balancer started. */
  readonly startedAt: number
  readonly mode: 'sequential' | 'workers'
  /** null when the cache is off. */
  readonly cache: PurgeableCache | null
  /** Re-reads and validates the config source; null when started from an object. Throws ConfigError. */
  readonly configSource: (() => Config) | null
  /** Cluster membership through Redis (config.cluster), null when off. */
  readonly cluster: ClusterHooks | null
  upstreamStatus (): UpstreamStatus[]
  /** Apply `next` without dropping connections. */
  reload (next: Config): ReloadResult
}
