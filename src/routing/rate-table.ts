/**
 * Size of the shared rate-limit table: the global limit's tableSize, or the
 * schema's default tableSize when only routes have limits (their counters
 * live in the same table, each route under its own key seed), else none.
 */
import type { Config } from '../config/types'
import { schemaDefault } from '../config/defaults'

export function rateTableSlots (config: Config): number {
  if (config.rateLimit !== undefined) return config.rateLimit.tableSize
  return (config.routes ?? []).some((r) => r.rateLimit !== undefined) ? schemaDefault('rateLimit.tableSize') as number : 0
}
