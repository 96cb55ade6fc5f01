/**
 * Checks of the resilience settings that JSON Schema cannot express, each
 * with its JSON path (config/load.ts collects them with the others).
 */
import type { Config, UpstreamConfig } from '../config/types'

/** The pool-level checks, for the upstream list at `path` (today only `/upstreams`). */
export function poolConfigErrors (upstreams: readonly UpstreamConfig[], path: string): string[] {
  const errors: string[] = []
  if (upstreams.length > 0 && upstreams.every((u) => u.backup)) {
    errors.push(`${path}: every upstream is a backup; a backup only takes traffic while no primary is healthy, so at least one must not be`)
  }
  return errors
}

export function resilienceConfigErrors (config: Config): string[] {
  const errors = poolConfigErrors(config.upstreams, '/upstreams')
  if (config.retryOn.includes('retriable-status') && config.retriableStatuses.length === 0) {
    errors.push('/retriableStatuses: must list at least one status when /retryOn has "retriable-status"')
  }
  return errors
}

/** A pool as the admin side names it: its name and its block in the shared state. */
export interface PoolRef {
  name: string
  index: number
}

/** The configured pools: today the default one (top-level `upstreams`), pool 0. */
export function configuredPools (config: Config): PoolRef[] {
  void config
  return [{ name: 'default', index: 0 }]
}
