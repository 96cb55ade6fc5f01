/**
 * healthCheck.active.expectStatus compiled once into a lookup table, so a
 * check result is one array read: `[200, "3xx"]` marks 200 and 300..399.
 * Numbers match exactly; "Nxx" strings match a whole class (RFC 9110 §15: the
 * first digit of a status code defines its class).
 */
import { ConfigError } from '../errors'

/** One byte per status code 0..599: 1 when that status counts as healthy. */
export type ExpectedStatusTable = Uint8Array

const STATUS_LIMIT = 600
const CLASS_PATTERN = /^[1-5]xx$/

export function compileExpectStatus (expectStatus: ReadonlyArray<number | string>): ExpectedStatusTable {
  const table = new Uint8Array(STATUS_LIMIT)
  // The schema already rejects these; checked again because a table built from
  // a bad value would silently mark every upstream unhealthy.
  const errors: string[] = []
  for (const item of expectStatus) {
    if (typeof item === 'number') {
      if (!Number.isInteger(item) || item < 100 || item >= STATUS_LIMIT) errors.push(`expectStatus: ${item} is not an HTTP status (100..599)`)
      else table[item] = 1
    } else if (CLASS_PATTERN.test(item)) {
      const first = (item.charCodeAt(0) - 0x30) * 100
      table.fill(1, first, first + 100)
    } else {
      errors.push(`expectStatus: "${item}" is neither a status nor a class like "2xx"`)
    }
  }
  if (expectStatus.length === 0) errors.push('expectStatus: must list at least one status')
  if (errors.length > 0) throw new ConfigError(errors.map((e) => `/healthCheck/active/${e}`), 'healthCheck.active')
  return table
}

export function isExpectedStatus (table: ExpectedStatusTable, status: number): boolean {
  return status >= 0 && status < STATUS_LIMIT && table[status] === 1
}
