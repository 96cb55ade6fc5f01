/**
 * A stored response as the store takes it in (CacheEntryInput) and hands it
 * back (CacheEntry, one per connection or thread, reused: every field is
 * assigned in the constructor and overwritten by each lookup).
 */

export interface CacheEntryInput {
  status: number
  /**
   * The response head to replay: status line + fields + CRLF CRLF, with
   * hop-by-hop fields (RFC 9110 §7.6.1) already removed by the caller. Age is
   * the caller's to add on the way out (RFC 9111 §5.1).
   */
  head: Buffer
  body: Buffer
  /** When the response was received (response_time, RFC 9111 §4.2.3), ms. */
  storedAtMs: number
  /** The response's Date field in ms (its receipt time when it had none, RFC 9110 §6.6.1). */
  responseDateMs: number
  /** corrected_initial_age in seconds (policy.ts correctedInitialAgeSec). */
  initialAgeSec: number
  /** Freshness lifetime in ms (policy.ts responseFreshness); 0 = must revalidate on every use. */
  freshForMs: number
  etag: string | null
  lastModified: string | null
  /** Lower-case field names from Vary (policy.ts varyNames), null when the response does not vary. */
  varyNames: string[] | null
  /** key.ts varyValues(varyNames, request) for the request that fetched it; null when varyNames is. */
  varyValues: string | null
  /** stale-while-revalidate seconds (RFC 5861 §3); absent or -1 = none. */
  staleWhileRevalidateSec?: number
  /** stale-if-error seconds (RFC 5861 §4); absent or -1 = none (the configured default applies). */
  staleIfErrorSec?: number
  /** Never serve it stale: must-revalidate, proxy-revalidate, s-maxage or no-cache (policy.ts staleAllowed). */
  neverStale?: boolean
}

export class CacheEntry {
  status = 0
  /** Fresh copies: never views of the shared arena, which may be overwritten as soon as lookup returns. */
  head: Buffer = EMPTY
  body: Buffer = EMPTY
  storedAtMs = 0
  responseDateMs = 0
  initialAgeSec = 0
  freshForMs = 0
  etag: string | null = null
  lastModified: string | null = null
  /** Set when the entry was found through a Vary marker: the names it varies on (shared between lookups: read only). */
  varyNames: string[] | null = null
  staleWhileRevalidateSec = -1
  staleIfErrorSec = -1
  neverStale = false
  /** current_age at the lookup's nowMs (RFC 9111 §4.2.3), ms. */
  currentAgeMs = 0
  /** freshness_lifetime > current_age at the lookup's nowMs (RFC 9111 §4.2). */
  fresh = false
}

const EMPTY = Buffer.alloc(0)
