/**
 * A HealthLogger that records what the active checker and the passive reviver
 * log, for the health tests to assert on.
 */
import type { HealthLogger } from '../../src/health/passive'

export interface LogLine { level: 'info' | 'warn', bindings: Record<string, unknown>, message: string }

export function recorder (): { log: HealthLogger, lines: LogLine[] } {
  const lines: LogLine[] = []
  return {
    lines,
    log: {
      info: (bindings, message) => { lines.push({ level: 'info', bindings: bindings as Record<string, unknown>, message }) },
      warn: (bindings, message) => { lines.push({ level: 'warn', bindings: bindings as Record<string, unknown>, message }) },
    },
  }
}
