/**
 * policy.ts's RequestView / ResponseView over a parsed head (HeadParser):
 * repeated field lines joined with ", " as RFC 9110 §5.3 allows, which the
 * list-valued fields the policy reads (Cache-Control, Vary, If-None-Match,
 * Pragma) need. One view per connection, pointed at its parser once.
 */
import type { HeadParser } from '../http/head-parser'

export class HeadView {
  parser: HeadParser

  constructor (parser: HeadParser) {
    this.parser = parser
  }

  get method (): string { return this.parser.method }
  get status (): number { return this.parser.status }

  /** Every line of the field named `lowerName` joined with ", ", or null. */
  header (lowerName: string): string | null {
    return this.parser.header(lowerName)
  }
}
