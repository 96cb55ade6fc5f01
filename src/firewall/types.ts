/**
 * What the firewall sees of a request and what it reports back. The proxy owns
 * the request view (one object per connection, refilled per request); the
 * firewall only reads it, synchronously, inside evaluate().
 */

export interface FirewallRequest {
  /** Method token as received, e.g. 'GET'. */
  method: string
  /**
   * Raw request-target as received, one char per byte (latin1), e.g.
   * '/a/b?x=1'. Absolute-form ('http://h/p?x') is matched on its path part.
   */
  target: string
  clientIp: string
  /**
   * Content-Length; 0 for a request with neither Content-Length nor
   * Transfer-Encoding (RFC 9112 §6.3: its body length is zero); -1 when the
   * length is not known up front (chunked). See rules.ts for what a
   * maxBodyBytes rule does with -1.
   */
  bodyLength: number
  /** First value of a header, null when absent. Called only for rules with a header condition. */
  header (lowerCaseName: string): string | null
}

export type FirewallAction = 'allow' | 'deny' | 'log'

/** One rule as the access log and the admin API name it; one frozen object per rule, built at creation. */
export interface FirewallVerdict {
  readonly action: FirewallAction
  readonly ruleIndex: number
  readonly ruleName: string
}

/** The slice of a pino logger the firewall uses (log rules only). */
export interface FirewallLog {
  warn (bindings: object, message: string): void
}
