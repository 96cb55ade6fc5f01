/**
 * The request a client connection is working on: every per-request field,
 * assigned here and reset in one place (undici's client-h1 resets its parser
 * fields in one block). ClientConnection extends it; the access log and the
 * request filter read it.
 */
import type { UpstreamEntry } from '../shared/state'
import { BODY_NONE, type BodyKind, type HeadParser } from '../http/head-parser'
import type { AccessRecord } from './access-log'
import type { RequestQueue } from './request-queue'
import type { PoolRuntime } from '../routing/pools'
import type { CompiledRoute } from '../routing/router'
import type { RequestTrace } from '../tracing/tracer'

/** How a response body goes to the client: as framed, re-chunked, or de-chunked for HTTP/1.0. */
export type BodyRelay = 'raw' | 'rechunk' | 'dechunk'

export abstract class Exchange implements AccessRecord {
  /** The socket peer's address (IPv4-mapped IPv6 unwrapped). */
  readonly peerIp: string

  method = ''
  /** The request target as received, read from the parser only when something asks (the log, the firewall). */
  abstract readonly target: string
  /** The request head's parser (the access log reads fields from its bytes). */
  abstract readonly parser: HeadParser
  clientIp = ''
  bodyLength = -1
  isHead = false
  keepAlive = true
  http10 = false
  upgrading = false
  bodyKind: BodyKind = BODY_NONE
  bodyRemaining = 0
  bodyDone = true
  /** Some request body bytes have gone to an upstream (then it cannot be replayed). */
  bodySent = false
  requestHead: Buffer | null = null
  /** The body bytes that came with the head, as they go upstream (re-chunked when chunked). */
  initialBody: Buffer | null = null
  /** requestHead carries the first body bytes too. */
  headCarriesBody = false
  entry: UpstreamEntry | null = null
  retriesLeft = 0
  /** Retries made for this request (connect failovers included): the access log's `retries`. */
  retries = 0
  /** A repeat is harmless: an idempotent method, or an Idempotency-Key when allowed (retry.ts). */
  replaySafe = false
  /** Body bytes sent after the head, kept for a replay (null: not kept; see retryBodyMaxBytes). */
  kept: Buffer[] | null = null
  keptBytes = 0
  /** Some body bytes went upstream without being kept: the request can no longer be replayed. */
  lostBody = false
  /** A retry retryElsewhere decided, counted once its attempt starts (an upstream was picked): its RETRY_REASONS index, or -1. */
  pendingRetry = -1
  /** The upstream slot whose U_RETRIES that retry counts on (it spends one of `retries`), -1 for a free one. */
  pendingRetryFrom = -1
  /** The next attempt is a retry that spends the pool's retry budget while in flight. */
  retryInFlight = false
  /** Upstream slot whose U_RETRIES_ACTIVE this request holds, -1 for none. */
  retrySlot = -1
  /** The last connect failure was a timeout (Proxy-Status connection_timeout, not connection_refused). */
  connectTimedOut = false
  /** The queue this request waits in for a connection slot, null when not waiting. */
  queuedIn: RequestQueue | null = null
  queuedUntil = 0
  startedAt = 0
  sentAt = 0
  status = 0
  bytesOut = 0
  /** Request bytes read from the client for this request: head and body (the access log's bytesIn). */
  bytesIn = 0
  /** Milliseconds from sending the request upstream to its final response head; -1 while none came. */
  upstreamMs = -1
  flag = '-'
  responseStarted = false
  /** The response is the proxy's own (an error answer, the cache), not relayed from an upstream. */
  localAnswer = false
  closeAfterResponse = false
  relay: BodyRelay = 'raw'
  /** Response head not yet written: sent together with the first body bytes in one write. */
  heldHead: Buffer | null = null
  /** How many of heldHead's bytes are the head (it may be the thread's scratch region, read-arena.ts). */
  heldHeadBytes = 0
  /** Set-Cookie line to add to the response (sticky sessions), '' for none. */
  setCookie = ''
  stickyIndex = -1
  lastFailure = ''
  /** The route that matched (null: none, or no routes), and the pool the request goes to (null: none). */
  route: CompiledRoute | null = null
  pool: PoolRuntime | null = null
  /** The request's normalised path as the route phase saw it ('' when no route needed it). */
  routePath = ''
  /** This request's limits and timeouts: the top level's, or its route's overrides. */
  responseMs = 0
  upstreamIdleMs = 0
  maxBodyBytes = 0
  /** Rate-limit fields of a 429 ('' unless the request was rate limited). */
  rateHeaders = ''
  /** The request's ID (config.requestId; '' while off): see request-id.ts. */
  requestId = ''
  /** The field line carrying a new ID upstream; '' when the client's own goes as received. */
  requestIdLine = ''
  /** This request's spans when it is sampled for tracing, else null. */
  trace: RequestTrace | null = null

  constructor (peerIp: string) {
    this.peerIp = peerIp
    this.clientIp = peerIp
  }

  /** Every per-request field, in one place, before a request starts. */
  protected resetRequest (): void {
    this.method = ''
    this.clientIp = this.peerIp
    this.bodyLength = -1
    this.isHead = false
    this.keepAlive = true
    this.http10 = false
    this.upgrading = false
    this.bodyKind = BODY_NONE
    this.bodyRemaining = 0
    this.bodyDone = true
    this.bodySent = false
    this.requestHead = null
    this.initialBody = null
    this.headCarriesBody = false
    this.entry = null
    this.retriesLeft = 0
    this.retries = 0
    this.replaySafe = false
    this.kept = null
    this.keptBytes = 0
    this.lostBody = false
    this.pendingRetry = -1
    this.pendingRetryFrom = -1
    this.retryInFlight = false
    this.retrySlot = -1
    this.connectTimedOut = false
    this.queuedIn = null
    this.queuedUntil = 0
    this.startedAt = 0
    this.sentAt = 0
    this.status = 0
    this.bytesOut = 0
    this.bytesIn = 0
    this.upstreamMs = -1
    this.flag = '-'
    this.responseStarted = false
    this.localAnswer = false
    this.closeAfterResponse = false
    this.relay = 'raw'
    this.heldHead = null
    this.setCookie = ''
    this.stickyIndex = -1
    this.lastFailure = ''
    this.route = null
    this.pool = null
    this.routePath = ''
    this.rateHeaders = ''
    this.requestId = ''
    this.requestIdLine = ''
    this.trace = null
  }
}
