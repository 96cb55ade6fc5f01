/**
 * Checks of the resilience settings that JSON Schema cannot express, each
 * with its JSON path (config/load.ts collects them with the others).
 */

/**
 * The pool-level checks, for the upstream list at `path` (`/upstreams`). It
 * may see a config that failed the schema (every error is reported in one
 * pass), so it checks shapes as it goes.
 */
export function poolConfigErrors (upstreams: unknown, path: string): string[] {
  const errors: string[] = []
  if (Array.isArray(upstreams) && upstreams.length > 0 && upstreams.every((u: unknown) => isObject(u) && u.backup === true)) {
    errors.push(`${path}: every upstream is a backup; a backup only takes traffic while no primary is healthy, so at least one must not be`)
  }
  return errors
}

export function resilienceConfigErrors (config: unknown): string[] {
  if (!isObject(config)) return []
  const errors = poolConfigErrors(config.upstreams, '/upstreams')
  if (isObject(config.pools)) {
    for (const [name, pool] of Object.entries(config.pools)) {
      if (isObject(pool)) errors.push(...poolConfigErrors(pool.upstreams, `/pools/${name}/upstreams`))
    }
  }
  const retryOn = config.retryOn
  const statuses = config.retriableStatuses
  if (Array.isArray(retryOn) && retryOn.includes('retriable-status') && !(Array.isArray(statuses) && statuses.length > 0)) {
    errors.push('/retriableStatuses: must list at least one status when /retryOn has "retriable-status"')
  }
  return errors
}

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** A pool as the admin side names it: its name and its block in the shared state. */
export interface PoolRef {
  name: string
  index: number
}

/** The configured pools, by name, with their blocks in the shared state (for the admin side). */
export function configuredPools (table: ReadonlyArray<{ readonly pool: string, readonly poolSlot: number }>): PoolRef[] {
  const seen = new Map<string, number>()
  for (const entry of table) if (!seen.has(entry.pool)) seen.set(entry.pool, entry.poolSlot)
  return [...seen].map(([name, index]) => ({ name, index }))
}
