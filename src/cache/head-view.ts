/**
 * policy.ts's RequestView / ResponseView over a parsed head (HeadParser),
 * joining repeated field lines with ", " as RFC 9110 §5.3 allows, which the
 * list-valued fields the policy reads (Cache-Control, Vary, If-None-Match,
 * Pragma) need. One view per connection, pointed at its parser once.
 */
import type { HeadParser } from '../http/head-parser'
import { LOWER } from '../http/tables'

export class HeadView {
  parser: HeadParser

  constructor (parser: HeadParser) {
    this.parser = parser
  }

  get method (): string { return this.parser.method }
  get status (): number { return this.parser.status }

  /** Every line of the field named `lowerName` joined with ", ", or null. Allocates only the returned string. */
  header (lowerName: string): string | null {
    const p = this.parser
    const buf = p.buf
    const base = p.base
    const fields = p.fields
    const n = lowerName.length
    let out: string | null = null
    outer:
    for (let i = 0; i < p.headerCount; i++) {
      const f = i * 5
      const s = base + fields[f]
      if (base + fields[f + 1] - s !== n) continue
      for (let j = 0; j < n; j++) if (LOWER[buf[s + j]] !== lowerName.charCodeAt(j)) continue outer
      const value = p.fieldValue(i)
      out = out === null ? value : out + ', ' + value
    }
    return out
  }
}
