/**
 * One client connection and its request loop. Requests run one at a time, in
 * order, through these phases (Pingora's request_filter -> upstream_peer ->
 * response_filter -> logging):
 *
 *   read head -> route -> filter (client IP, firewall, rate limits)
 *     -> [route's own answer] -> cache lookup -> pick (in the route's pool)
 *     -> connect -> send (head, body) -> relay response -> log -> next
 *
 * `drive()` is the connection's one loop (undici's `_resume`, guarded by
 * `driving` as undici guards with kResuming): it reads the next pipelined head
 * from `input` and runs the request's phases. A request answered at once (a
 * local answer, a cache hit) returns to the loop; a request that must wait (an
 * upstream, a cache fill) leaves it, and its completion calls drive() again.
 * Nothing calls back into the parser from a completion, so a pipeline of any
 * length runs at constant stack depth.
 *
 * Bounded: unparsed input (`MAX_INPUT_BYTES`, then the socket is paused),
 * responses queued for a client that does not read (`MAX_QUEUED_OUTPUT`, then
 * the loop stops until 'drain'), requests per loop turn (`REQUESTS_PER_TURN`,
 * then the loop yields to other connections), interim responses (upstream.ts).
 *
 * The upstream half (send, relay, failures and retries) is UpstreamSide in
 * upstream-side.ts; the per-request record is Exchange in exchange.ts.
 * Monomorphic: every field is assigned in the constructor, per-request ones
 * again in resetRequest(). Socket handlers are module-level functions.
 */
import type * as net from 'node:net'
import type { LeaseWaiter, ProxyContext, RateDecisionLike } from './context'
import { W_OPEN_CONNECTIONS, W_REQUESTS, H_PROTOCOL_ERRORS, P_REQUESTS, P_NO_UPSTREAM } from '../shared/layout'
import {
  HeadParser, KIND_REQUEST, HEAD_INCOMPLETE, HEAD_ERROR, BODY_NONE, BODY_LENGTH, BODY_CHUNKED,
} from '../http/head-parser'
import { H_COOKIE, H_UPGRADE } from '../http/header-names'
import { CHUNKED_ERROR } from '../http/chunked'
import { buildRequestHead, type ForwardIdentity, type RequestEdit } from '../http/serialize'
import { errorReply, errorReplyWith } from '../http/replies'
import { PickContext } from '../balancer/types'
import { describe, type ErrorCode } from '../errors'
import { findCookie } from '../sticky/cookie'
import { logAccess, logRejected } from './access-log'
import type { Expirable } from './sweeper'
import { CacheState, writeCachedResponse, type CacheUser, type CachedResponse, type CacheDecision } from './cache-path'
import type { RevalidationTarget } from './cache-hook'
import { filterRequest, limitRequest, type FilterVerdict, type FilteredRequest } from './request-filter'
import { pickUpstream, peekUpstream, PICK_FULL, PICK_NONE } from './pick'
import { isReplaySafe } from './retry'
import type { QueueWaiter, QueueRefusal } from './request-queue'
import { proxyErrorType, proxyStatusLine } from '../http/proxy-status'
import { P_QUEUE_FULL } from '../shared/layout'
import type { CompiledRoute } from '../routing/router'
import type { LocalAnswer } from '../routing/local-answer'
import { upgradeAllowed } from './upgrade'
import { comparableHost } from '../http/field-syntax'
import { UpstreamSide, COALESCE_BYTES } from './upstream-side'
import { normalisedPath, type RouteLookup } from '../routing/router'
import type { PoolRuntime } from '../routing/pools'
import type { ListenerRuntime } from '../net/accept'
import { httpsRedirectReply, acmeChallengeReply } from '../tls/redirect'
import { connectionGone } from '../net/peer-reset'
import { L_REDIRECTS } from '../shared/layout'
import { borrowed, owned } from '../net/read-arena'
import { monotonicNow, wallNow, deliverRead } from './clock'

/**
 * After our last response on a connection we half-close and keep reading (and
 * discarding) for a while: closing with unread input makes the kernel send RST,
 * which can destroy the response before the client reads it (RFC 9112 §9.6).
 */
const LINGER_MS = 2000
const LINGER_MAX_BYTES = 16 * 1024 * 1024
/** Unparsed pipelined input held while a request is in progress; past it the socket is paused. */
const MAX_INPUT_BYTES = 64 * 1024
/** Response bytes queued on a client socket past which no further pipelined request starts. */
const MAX_QUEUED_OUTPUT = 256 * 1024
/** Requests one turn of the loop may run before it yields to the event loop (other connections). */
const REQUESTS_PER_TURN = 64
const kClient = Symbol('switchyard.client')
/** revalidationUpstream's scratch pick (one thread, one call at a time): nothing tried, no hash key. */
const revalidationPick = new PickContext()

export class ClientConnection extends UpstreamSide implements Expirable, FilteredRequest, CacheUser, LeaseWaiter, QueueWaiter {
  readonly identity: ForwardIdentity
  readonly parser: HeadParser
  readonly pick = new PickContext()
  /** The route phase's answer (reused per request). */
  readonly lookup: RouteLookup = { route: null, path: '' }
  /** What the route changes in the forwarded head (reused per request). */
  readonly edit: RequestEdit = { target: null, host: null, remove: null }
  rate: RateDecisionLike | null
  routeRate: RateDecisionLike | null = null
  /** drive() is on the stack (undici's kResuming): a completion inside it must not re-enter. */
  driving = false
  /** The loop yielded to the event loop (REQUESTS_PER_TURN) and runs again from setImmediate. */
  yielded = false
  /** The loop stopped because the client is not reading what we queued ('drain' restarts it). */
  outputFull = false
  /** Bytes discarded while lingering. */
  discarded = 0
  /** The listener this connection came in on (TLS or not, httpsRedirect); null for a bare attach (tests). */
  readonly listener: ListenerRuntime | null
  /** The scheme the client used, for the access log's "tls" key (undefined without a listener). */
  readonly proto: 'http' | 'https' | undefined
  /** A TLS client's TCP descriptor, to tell its reset from a half-close (src/net/peer-reset.ts); -1 otherwise. */
  tcpFd = -1

  constructor (ctx: ProxyContext, socket: net.Socket, peerIp: string, listener: ListenerRuntime | null = null) {
    // an IPv4 peer on a dual-stack socket reads '::ffff:1.2.3.4': it is 1.2.3.4
    const ip = peerIp.startsWith('::ffff:') && peerIp.includes('.') ? peerIp.slice(7) : peerIp
    super(ctx, socket, ip)
    this.listener = listener
    this.proto = listener !== null ? listener.proto : undefined
    this.identity = {
      clientIp: ip,
      forwardedFor: ip.includes(':') ? `for="[${ip}]"` : `for=${ip}`,
      via: ctx.config.proxy.via,
      proto: listener !== null ? listener.proto : 'http',
    }
    this.parser = new HeadParser(KIND_REQUEST, ctx.headLimits)
    this.rate = ctx.limiter !== null ? ctx.limiter.newDecision() : null
    ;(socket as unknown as Record<symbol, ClientConnection>)[kClient] = this
    socket.setNoDelay(true)
    socket.on('data', onClientData)
    socket.on('end', onClientEnd)
    socket.on('error', onClientError)
    socket.on('close', onClientClose)
    socket.on('drain', onClientDrain)
    ctx.clients.add(this)
    ctx.sweeper.add(this)
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, W_OPEN_CONNECTIONS, 1)
    this.setDeadline('idle', ctx.config.timeouts.clientIdleMs)
  }

  /** The target as received: a string only when the log or the firewall reads it (valid until the parser resets). */
  get target (): string {
    const p = this.parser
    return p.targetEnd > 0 ? p.target() : ''
  }

  /** Phase: log. Count the response if the client got one (metrics), then one access-log line when the access log is on. */
  private logRequest (): void {
    if (this.responseStarted) this.countResponse()
    logAccess(this) // returns at once when the access log is off (log.ts: accessLog.on)
    if (this.trace !== null) { this.trace.end(this, this.flag); this.trace = null }
  }

  /**
   * Every response a client receives, relayed or answered locally, on this
   * thread's worker slot: a few Atomics.add (SharedState.recordClientResponse).
   * Request bytes are the request's head and body as read (bytesIn, the access log's).
   */
  private countResponse (): void {
    const ctx = this.ctx
    if (ctx.workerSlot === -1) return
    // a tunnel's life is not a request duration
    const durationMs = this.status === 101 ? -1 : monotonicNow() - this.startedAt
    const entry = this.entry
    ctx.state.recordClientResponse(ctx.workerSlot, entry === null ? -1 : entry.slot, this.status, this.localAnswer, durationMs, this.bytesIn, this.bytesOut)
  }

  // ---- FirewallRequest: the host the request is for (an absolute-form target's, RFC 9112 §3.2.2) stands in
  // for Host, in the form rules compare: lower case, no port, no trailing dot (Host: SECRET.:80 is secret) ----
  header (lowerCaseName: string): string | null {
    if (lowerCaseName !== 'host') return this.parser.header(lowerCaseName)
    const host = this.parser.hostName()
    return host === '' ? null : comparableHost(host)
  }

  onDeadline (): void {
    const kind = this.deadlineKind
    this.clearDeadline()
    if (kind === 'header' && this.phase === 'head') this.rejectRequest('SWY_ERR_CLIENT_TIMEOUT', 'client did not complete the request head in time')
    else if ((kind === 'idle' && this.phase === 'head') || kind === 'linger') this.socket.destroy()
    else if (kind === 'tunnelIdle' && this.phase === 'tunnel') {
      // no byte either way for tunnelIdleMs: close both sides (the 101 went out, so there is no answer to give)
      this.detachUpstream(true)
      this.logAndClose('SWY_ERR_TUNNEL_IDLE')
    }
  }

  /** Graceful shutdown: close now if no request is in progress. */
  closeIfIdle (): boolean {
    if (this.phase === 'head' && !this.parser.started && this.input === null) {
      this.socket.destroy()
      return true
    }
    this.keepAlive = false
    return false
  }

  destroy (): void {
    this.socket.destroy()
  }

  // ---- bytes from the client ----

  handleData (chunk: Buffer): void {
    switch (this.phase) {
      case 'head':
        this.appendInput(chunk)
        if (this.yielded) { // the loop yielded to other connections: bound what waits meanwhile
          if ((this.input as Buffer).length - this.inputStart > MAX_INPUT_BYTES) this.socket.pause()
        } else {
          this.drive()
        }
        break
      case 'body': this.forwardBody(chunk, 0); break
      case 'tunnel': {
        this.bytesIn += chunk.length
        this.setDeadline('tunnelIdle', this.tunnelIdleMs)
        const up = this.upstream
        if (up !== null && !up.socket.write(owned(chunk))) this.socket.pause()
        break
      }
      case 'closed':
        this.discarded += chunk.length
        if (this.discarded > LINGER_MAX_BYTES) this.socket.destroy()
        break
      default: // a request is in progress: these bytes are its body (connecting) or the next requests
        this.appendInput(chunk)
        if (this.input !== null && this.input.length - this.inputStart > MAX_INPUT_BYTES) this.socket.pause()
    }
  }

  /**
   * The end of a read into the thread's read arena (src/net/read-arena.ts):
   * what this connection keeps past it (unparsed input, the request head the
   * access log and the cache read later, a body waiting for its upstream)
   * gets bytes of its own. A request answered within the read keeps nothing.
   */
  settleBorrowed (): void {
    const input = this.input
    if (input !== null && borrowed(input)) {
      this.input = Buffer.from(input.subarray(this.inputStart))
      this.inputStart = 0
    }
    if (borrowed(this.parser.buf)) this.parser.detach()
    const body = this.initialBody
    if (body !== null && borrowed(body)) this.initialBody = Buffer.from(body)
  }

  protected appendInput (chunk: Buffer): void {
    const input = this.input
    if (input === null) {
      this.input = chunk
      this.inputStart = 0
    } else {
      this.input = Buffer.concat([input.subarray(this.inputStart), chunk])
      this.inputStart = 0
    }
  }

  /** The loop: run pipelined requests from `input` until one has to wait. */
  drive (): void {
    if (this.driving) return
    this.driving = true
    try {
      let budget = REQUESTS_PER_TURN
      while (this.phase === 'head' && this.input !== null) {
        if (this.socket.writableLength > MAX_QUEUED_OUTPUT) {
          // the client is not reading its responses: read no more requests until it does
          this.outputFull = true
          this.socket.pause()
          this.setDeadline('idle', this.ctx.config.timeouts.clientIdleMs)
          break
        }
        if (budget-- === 0) {
          // let the other connections run; read nothing more until we are back
          this.socket.pause()
          this.yielded = true
          setImmediate(driveLater, this)
          break
        }
        this.readHead()
      }
    } finally {
      this.driving = false
    }
    if (this.phase === 'head' && this.input === null && !this.outputFull) this.awaitInput()
  }

  /** Everything received is answered: wait for the next request, or close after a half-close. */
  private awaitInput (): void {
    if (this.clientEnded) {
      // a head that can never be completed: answer now rather than hold the connection until clientHeaderMs
      if (this.parser.started) this.rejectRequest('SWY_ERR_BAD_REQUEST', 'client closed the connection in the middle of a request head')
      else this.lingerAndClose()
      return
    }
    if (this.socket.isPaused()) this.socket.resume()
    if (!this.parser.started && this.deadlineKind !== 'idle') this.setDeadline('idle', this.ctx.config.timeouts.clientIdleMs)
  }

  /** Phase: read a request head from `input`; a complete one starts the request. */
  private readHead (): void {
    const buf = this.input as Buffer
    const start = this.inputStart
    this.input = null
    const p = this.parser
    if (!p.started) this.startedAt = monotonicNow()
    if (this.deadlineKind !== 'header') this.setDeadline('header', this.ctx.config.timeouts.clientHeaderMs)
    const r = p.execute(buf, start, buf.length)
    if (r === HEAD_INCOMPLETE) return // the parser keeps what it needs
    if (r === HEAD_ERROR) {
      this.method = p.method
      this.rejectRequest(p.error as ErrorCode, p.errorDetail)
      return
    }
    this.startRequest(buf, r)
  }

  /** A complete head: take its body bytes from this read, then run the request's phases. */
  private startRequest (buf: Buffer, bodyStart: number): void {
    const p = this.parser
    const ctx = this.ctx
    this.clearDeadline()
    this.method = p.method
    this.isHead = p.method === 'HEAD'
    this.http10 = p.versionMinor === 0
    this.keepAlive = p.keepAlive && !ctx.draining
    this.upgrading = p.hasUpgrade && p.connectionUpgrade && p.method === 'GET' && !this.http10 &&
      upgradeAllowed(p.headerOfKind(H_UPGRADE), ctx.config.proxy.allowedUpgrades)
    this.bodyKind = p.bodyKind
    this.bodyRemaining = p.bodyKind === BODY_LENGTH ? p.contentLength : 0
    this.bodyLength = p.bodyKind === BODY_CHUNKED ? -1 : (p.contentLength > 0 ? p.contentLength : 0)
    this.bodyDone = p.bodyKind === BODY_NONE
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, W_REQUESTS, 1)
    // phase: request ID (the client's when sane, else a new one), before anything can answer
    if (ctx.requestIds !== null) ctx.requestIds.assign(p, this)
    // phase: trace (decide; a sampled request starts its server span)
    if (ctx.tracing !== null) ctx.tracing.begin(this, p)
    // phase: route (decides the pool and this request's limits; any answer comes after the body is framed)
    this.routeRequest()

    const maxBody = this.maxBodyBytes
    if (maxBody > 0 && this.bodyLength > maxBody) {
      this.rejectRequest('SWY_ERR_BODY_TOO_LARGE', `Content-Length ${this.bodyLength} over limit ${maxBody}`)
      return
    }
    // this read: [bodyStart, bodyEnd) belongs to this request's body, the rest to the next requests
    let bodyEnd = bodyStart
    if (p.bodyKind === BODY_LENGTH) {
      bodyEnd = bodyStart + Math.min(this.bodyRemaining, buf.length - bodyStart)
      this.bodyRemaining -= bodyEnd - bodyStart
      this.bodyDone = this.bodyRemaining === 0
      if (bodyEnd > bodyStart) this.initialBody = buf.subarray(bodyStart, bodyEnd)
    } else if (p.bodyKind === BODY_CHUNKED) {
      const c = this.chunked
      c.reset()
      const e = c.execute(buf, bodyStart, buf.length)
      if (e === CHUNKED_ERROR) { this.rejectRequest('SWY_ERR_BAD_CHUNK', c.error); return }
      if (maxBody > 0 && c.dataBytes > maxBody) { this.rejectRequest('SWY_ERR_BODY_TOO_LARGE', 'chunked body over limit'); return }
      bodyEnd = e >= 0 ? e : buf.length
      this.bodyDone = e >= 0
      this.initialBody = c.encode(buf, false) // canonical chunk lines (RFC 9112 §7.1), kept trailers only
    }
    this.bytesIn = p.headLength + (bodyEnd - bodyStart)
    if (bodyEnd < buf.length) {
      this.input = buf
      this.inputStart = bodyEnd
    }
    // the client half-closed before this body ended: every byte it will ever send is here, so it never can
    if (this.clientEnded && !this.bodyDone) { this.dropIncomplete(); return }

    // phase: local answers of the listener (ACME HTTP-01 on plain listeners, then httpsRedirect)
    const listener = this.listener
    if (listener !== null && listener.proto === 'http') {
      if (ctx.acmeChallenges !== null && this.answerChallenge(ctx.acmeChallenges)) return
      if (listener.redirectPort !== null && this.redirect(listener)) return
    }

    // phase: request filter (client address, firewall, rate limits: the global one, then the route's)
    this.afterFilter(filterRequest(ctx, this))
  }

  /** Act on the filter's verdict: refuse, park for a cluster lease, or go on to the cache and the upstream. */
  private afterFilter (verdict: FilterVerdict): void {
    const ctx = this.ctx
    if (verdict === 'pending') {
      this.phase = 'rateWait'
      ;(ctx.limiter as { wait: (ip: string, w: LeaseWaiter) => void }).wait(this.clientIp, this)
      return
    }
    if (verdict !== null) { this.failRequest(verdict, this.lastFailure); return }

    // the route's own answer (redirect, respond), or no route and no pool "default"
    const route = this.route
    if (route !== null && route.local !== null) { this.answerForRoute(route); return }
    if (this.pool === null) { this.failRequest('SWY_ERR_NO_ROUTE', 'no route matched and there is no pool "default"'); return }

    // phase: cache lookup
    // an upgrade is never answered from the cache (nor holds a fill claim for the life of a tunnel);
    // a route may turn the cache off, and one that edits response fields never answers from it (the edits are the upstream's)
    if (ctx.cache !== null && !this.upgrading && (route === null || (route.cache && route.responseEdits === null))) {
      if (this.cacheState === null || this.cacheState.hook !== ctx.cache) this.cacheState = new CacheState(ctx.cache, this)
      if (this.onCacheDecision(this.cacheState.onRequest(this.isHead, this.bodyKind === BODY_NONE))) return
    } else if (this.cacheState !== null) {
      this.cacheState.reset()
      this.cacheState = null
    }
    this.forwardRequest()
  }

  /**
   * Phase: route. The first matching route (src/routing/router.ts) gives the
   * pool and this request's overrides; without routes, or when none matches,
   * the pool is "default" (null when there is none: answered 404 after the
   * body is framed). Costs one branch when the config has no routes.
   */
  private routeRequest (): void {
    const ctx = this.ctx
    const config = ctx.config
    this.responseMs = config.timeouts.responseMs
    this.upstreamIdleMs = config.timeouts.upstreamIdleMs
    this.maxBodyBytes = config.limits.maxBodyBytes
    const router = ctx.router
    if (router === null) { this.pool = ctx.pools.fallback; return }
    const lookup = this.lookup
    router.match(this.parser, lookup)
    const route = lookup.route
    this.routePath = lookup.path
    if (route === null) { this.pool = ctx.pools.fallback; return }
    this.route = route
    ctx.state.addRouteHit(route.index)
    this.pool = route.pool ?? (route.local === null ? ctx.pools.fallback : null)
    if (route.responseMs > 0) this.responseMs = route.responseMs
    if (route.upstreamIdleMs > 0) this.upstreamIdleMs = route.upstreamIdleMs
    if (route.maxBodyBytes >= 0) this.maxBodyBytes = route.maxBodyBytes
  }

  /** A route's redirect or fixed response, with its response fields. */
  private answerForRoute (route: CompiledRoute): void {
    const local = route.local as LocalAnswer
    const close = this.beginLocalAnswer(local.status, '-')
    this.writeOut(local.render(this, close, this.isHead, this.responseIdLine() + (route.responseEdits !== null ? route.responseEdits.render(this) : '')))
    this.finishRequest()
  }

  /** Parked for a cluster lease: the primary answered (or gave up); check the limit again. */
  onLease (failed: boolean): void {
    if (this.phase !== 'rateWait') return // the client went away meanwhile
    this.phase = 'head'
    if (failed && this.rate !== null) this.rate.fallback = true
    this.afterFilter(limitRequest(this.ctx, this))
  }

  /** RFC 8555 §8.3: GET /.well-known/acme-challenge/TOKEN answers the key authorization; false for other paths. */
  private answerChallenge (challenges: Map<string, string>): boolean {
    const reply = acmeChallengeReply(this.parser, challenges, !this.keepAlive || !this.bodyDone || this.ctx.draining, this.isHead, this.responseIdLine())
    if (reply === null) return false
    this.beginLocalAnswer(reply.status, '-')
    this.writeOut(reply.bytes)
    this.finishRequest()
    return true
  }

  /** httpsRedirect: answer 308 to the https URL; false when the request names no host (answered as usual). */
  private redirect (listener: ListenerRuntime): boolean {
    const close = !this.keepAlive || !this.bodyDone || this.ctx.draining
    const reply = httpsRedirectReply(this.parser, listener.redirectPort as string, close, this.isHead, this.responseIdLine())
    if (reply === null) return false
    this.ctx.state.addListener(listener.index, L_REDIRECTS, 1)
    this.beginLocalAnswer(308, '-')
    this.writeOut(reply)
    this.finishRequest()
    return true
  }

  /** Act on the cache phase's decision; true when the request was answered or parked. */
  private onCacheDecision (decision: CacheDecision): boolean {
    if (decision === 'forward') return false
    if (decision === 'wait') {
      this.phase = 'cacheWait'
      return true
    }
    this.serveCached((this.cacheState as CacheState).response)
    return true
  }

  /** Where a stale-while-revalidate background request for this request goes (CacheUser): the balancer's pick now. */
  revalidationUpstream (): RevalidationTarget | null {
    // the request's own pool (its route's, or default); a background revalidation sends the request
    // as received, so a route that rewrites it gets none (the entry is refreshed by a foreground miss)
    const route = this.route
    const pool = this.pool ?? this.ctx.pools.fallback
    if (pool === null || (route !== null && route.editsRequest)) return null
    revalidationPick.reset()
    const index = peekUpstream(this.ctx, pool, revalidationPick)
    if (index < 0) return null
    const entry = pool.table[index]
    const proxy = entry.proxyProtocol ?? null
    return { entry, prefix: proxy !== null ? this.proxyHeader(proxy) : null }
  }

  /** Parked for a cache fill: the thread's poll timer nudges us. */
  onCacheWaitTick (now: number): void {
    if (this.phase !== 'cacheWait' || this.cacheState === null) return
    if (this.onCacheDecision(this.cacheState.lookupAgain(now))) return
    this.forwardRequest()
  }

  /** Phase: pick an upstream of the request's pool and send the request (after the filter and the cache). */
  private forwardRequest (): void {
    const ctx = this.ctx
    const p = this.parser
    const pool = this.pool as PoolRuntime
    this.pick.reset()
    this.pick.clientIp = this.clientIp
    if (pool.hashCookie !== null || pool.sticky !== null) {
      const cookies = p.headerOfKind(H_COOKIE, '; ')
      if (pool.hashCookie !== null) this.pick.hashKey = cookies === null ? '' : (findCookie(cookies, pool.hashCookie) ?? '')
      if (pool.sticky !== null) this.stickyIndex = pool.sticky.route(cookies)
    }
    if (pool.hashHeader !== null) this.pick.hashKey = p.header(pool.hashHeader) ?? ''
    ctx.state.addPool(pool.slot, P_REQUESTS, 1)

    const initial = this.initialBody
    let extra = this.cacheState !== null ? this.cacheState.conditionalFields() : ''
    const route = this.route
    let edit: RequestEdit | null = null
    if (route !== null && route.editsRequest) {
      edit = this.edit
      edit.target = route.forwardTarget(this.routePath !== '' ? this.routePath : normalisedPath(p), p.target())
      edit.host = route.setHost
      edit.remove = route.requestEdits !== null ? route.requestEdits.remove : null
      if (route.requestEdits !== null) extra += route.requestEdits.render(this)
    }
    const coalesce = initial !== null && initial.length <= COALESCE_BYTES
    extra += this.requestIdLine + (this.trace !== null ? this.trace.parentLine : '')
    this.requestHead = buildRequestHead(p, this.identity, this.upgrading, coalesce ? initial : null, extra, edit)
    if (coalesce) { this.initialBody = null; this.headCarriesBody = true }
    const policy = ctx.retry
    this.retriesLeft = route !== null && route.retries >= 0 ? route.retries : policy.retries
    this.replaySafe = isReplaySafe(policy, p.method, () => p.header('idempotency-key') !== null)
    // a body still to come is kept for a replay only when the request may be replayed and the body is small
    // (retryBodyMaxBytes); a larger one streams and is never retried. What came with the head is kept anyway.
    if (!this.bodyDone && this.replaySafe && this.retriesLeft > 0 && this.bodyLength <= policy.bodyMaxBytes) this.kept = []
    this.phase = 'connecting'
    // hold the body back until an upstream is connected: a failed connect can then go elsewhere
    if (!this.bodyDone) this.socket.pause()
    this.dispatch()
  }

  /** Choose an upstream and get a connection to it (again, after a failure that allows it). */
  protected dispatch (): void {
    const ctx = this.ctx
    const pool = this.pool as PoolRuntime
    const index = pickUpstream(ctx, pool, this.pick, this.stickyIndex)
    if (index === PICK_FULL) {
      this.waitForSlot()
      return
    }
    this.connectPicked(index)
  }

  protected pickForRetry (): number {
    return pickUpstream(this.ctx, this.pool as PoolRuntime, this.pick, this.stickyIndex)
  }

  /** Connect to the upstream the pick phase chose (it holds its in-flight count), or answer when there is none. */
  protected connectPicked (index: number): void {
    const ctx = this.ctx
    const pool = this.pool as PoolRuntime
    if (index === PICK_NONE) {
      const tried = this.pick.triedCount > 0
      if (!tried) ctx.state.addPool(pool.slot, P_NO_UPSTREAM, 1)
      this.failRequest(tried ? 'SWY_ERR_UPSTREAM_CONNECT' : 'SWY_ERR_NO_HEALTHY_UPSTREAM', tried ? this.lastFailure : `no upstream is available in pool ${pool.name}`)
      return
    }
    // a new cookie unless the request's own sticky cookie chose this upstream
    this.setCookie = pool.sticky !== null && index !== this.stickyIndex ? pool.sticky.setCookieLine(index) : ''
    this.pick.markTried(index)
    this.connectTo(pool.table[index], true)
  }

  // ---- the queue (every upstream at its maxConnections) ----

  /** Wait in the pool's queue for a connection slot; 503 at once when there is no queue or it is full. */
  private waitForSlot (): void {
    const ctx = this.ctx
    const pool = this.pool as PoolRuntime
    const queue = pool.gate.queue
    if (queue === null) ctx.state.addPool(pool.slot, P_QUEUE_FULL, 1)
    if (queue === null || !queue.enqueue(this, wallNow())) {
      this.failRequest('SWY_ERR_QUEUE_FULL', 'every upstream is at its maxConnections and the queue is full')
      return
    }
    this.queuedIn = queue
    this.phase = 'queued'
  }

  /** QueueWaiter: a slot may be free. true when done waiting (connecting now, or answered). */
  retryFromQueue (): boolean {
    if (this.queuedIn === null || this.phase !== 'queued') return true
    const index = pickUpstream(this.ctx, this.pool as PoolRuntime, this.pick, this.stickyIndex)
    if (index === PICK_FULL) return false
    this.queuedIn = null
    this.phase = 'connecting'
    this.connectPicked(index)
    return true
  }

  /** QueueWaiter: timed out, or the queue is drained (shutdown, reload): 503 with Retry-After. */
  refuseFromQueue (code: QueueRefusal): void {
    const queue = this.queuedIn
    if (queue === null) return
    this.queuedIn = null
    this.failRequest(code, code === 'SWY_ERR_QUEUE_TIMEOUT' ? `no connection slot within ${queue.timeoutMs} ms` : 'the queue was drained')
  }

  /** Leave the queue without an answer from it (the client went away, or is being answered otherwise). */
  private leaveQueue (): void {
    const queue = this.queuedIn
    if (queue === null) return
    this.queuedIn = null
    queue.remove(this)
  }

  // ---- ends of a request ----

  /** Answer from the cache (hit, 304, only-if-cached 504). */
  private serveCached (response: CachedResponse): void {
    this.status = response.status
    this.localAnswer = true
    this.responseStarted = true
    this.closeAfterResponse = !this.keepAlive || this.ctx.draining
    this.bytesOut += writeCachedResponse(this.socket, this.writeFd, response, this.ctx.config.proxy.via, this.closeAfterResponse, this.http10, this.responseIdLine())
    this.finishRequest()
  }

  /** Phase: log. The response went out completely: next request or close. */
  protected finishRequest (): void {
    if (this.cacheState !== null) this.cacheState.reset()
    this.logRequest()
    if (this.closeAfterResponse || !this.keepAlive) {
      this.lingerAndClose()
      return
    }
    this.resetRequest()
    this.parser.reset()
    this.phase = 'head'
    this.drive() // returns at once when the loop is on the stack: it goes on by itself
  }

  /** Answer with a response the proxy makes itself (policy refusal, gateway error); no response has started. */
  protected failRequest (code: ErrorCode, detail: string): void {
    this.leaveQueue()
    // RFC 5861 §4: an upstream failure with a stale-if-error entry at hand is answered from it
    const cache = this.cacheState
    if (cache !== null && !this.responseStarted && cache.serveStaleOnError(code)) {
      this.lastFailure = detail
      this.detachUpstream(true)
      this.serveCached(cache.response)
      return
    }
    const info = describe(code)
    this.lastFailure = detail
    const close = this.beginLocalAnswer(info.status, info.flag)
    // the canned reply carries `Proxy-Status: switchyard; error=<its type>` (RFC 9209); build one only for more
    const timedOut = code === 'SWY_ERR_UPSTREAM_CONNECT' && this.connectTimedOut
    let extra = this.responseIdLine()
    if (code === 'SWY_ERR_RATE_LIMITED') extra += this.rateHeaders // the limit that refused: the global one or the route's
    else if (code === 'SWY_ERR_QUEUE_FULL' || code === 'SWY_ERR_QUEUE_TIMEOUT') extra += 'Retry-After: ' + (this.pool?.gate.queue?.retryAfterSeconds ?? 1) + '\r\n'
    const details = this.ctx.config.proxy.statusDetails
    this.writeOut(extra === '' && !details && !timedOut
      ? errorReply(code, close, this.isHead)
      : errorReplyWith(code, close, extra, this.isHead, proxyStatusLine(proxyErrorType(code, timedOut), details ? detail : null)))
    this.finishRequest()
  }

  /** Before a response the proxy makes itself: record it, let go of any upstream; true when the connection closes after it. */
  private beginLocalAnswer (status: number, flag: string): boolean {
    this.status = status
    this.flag = flag
    this.localAnswer = true
    this.responseStarted = true
    // the connection survives a local answer only when the whole request body is already here
    this.closeAfterResponse = !this.keepAlive || !this.bodyDone || this.ctx.draining
    this.detachUpstream(true)
    return this.closeAfterResponse
  }

  /** A request refused before it goes anywhere (parser errors, limits): count, warn, answer and close. */
  private rejectRequest (code: ErrorCode, detail: string): void {
    if (this.startedAt === 0) this.startedAt = monotonicNow()
    this.ctx.state.addHeader(H_PROTOCOL_ERRORS, 1)
    logRejected(this, code, detail)
    this.keepAlive = false // framing can no longer be trusted: failRequest closes after the answer
    this.input = null
    this.failRequest(code, detail)
  }

  /**
   * Half-close after the last response; discard input until the client closes.
   * What is still queued for the client goes first: it has `clientIdleMs`
   * (never less than LINGER_MS) to take it, in all (a cache hit can queue a
   * whole entry), and LINGER_MS from when the last byte is out ('finish': our
   * FIN is sent) to close its side.
   */
  private lingerAndClose (): void {
    this.phase = 'closed'
    this.input = null
    this.discarded = 0
    const socket = this.socket
    socket.end()
    if (socket.isPaused()) socket.resume()
    if (socket.writableLength > 0) {
      socket.once('finish', onClientFlushed)
      this.setDeadline('linger', Math.max(this.ctx.config.timeouts.clientIdleMs, LINGER_MS))
    } else {
      this.setDeadline('linger', LINGER_MS)
    }
  }

  /** Everything queued for the client reached the kernel and our FIN went: LINGER_MS for the client's close. */
  handleFlushed (): void {
    if (this.phase === 'closed' && this.deadlineKind === 'linger' && !this.socket.destroyed) this.setDeadline('linger', LINGER_MS)
  }

  /** Failure after the response started (or a tunnel ended): log and cut. */
  protected logAndClose (code: ErrorCode | null): void {
    if (code !== null) this.flag = describe(code).flag
    this.logRequest()
    this.phase = 'closed'
    this.input = null
    this.socket.destroy()
  }

  // ---- socket lifecycle ----

  handleEnd (): void {
    // node reports a TLS client's reset as an end (src/net/peer-reset.ts): nothing can reach that client any more
    if (this.tcpFd !== -1 && !this.socket.destroyed && connectionGone(this.tcpFd)) { this.socket.destroy(); return }
    // the client half-closed: answer what it sent (pipelined requests included), then close
    this.clientEnded = true
    // the request in progress is the last one: say so in its response (Connection: close)
    if (this.input === null) this.keepAlive = false
    switch (this.phase) {
      case 'closed':
        // we had half-closed already: done, once what is queued is out (node closes the socket then by itself)
        if (this.socket.writableLength === 0) this.socket.destroy()
        break
      case 'head':
        if (this.input === null && !this.yielded) this.awaitInput()
        break
      case 'queued':
        // HAProxy's abortonclose: a client that closes while its request waits for a connection slot has
        // given up (a browser's cancel looks like this); its request never takes a slot
        this.dropIncomplete()
        break
      case 'tunnel': {
        // the client's half-close goes on to the upstream, which may still answer before it closes too
        const up = this.upstream
        if (up !== null) up.socket.end()
        break
      }
      case 'body':
      case 'connecting':
        // a response already under way (an upstream that answered early) is still relayed, then we close
        if (this.bodyDone || this.responseStarted) break
        this.dropIncomplete()
        break
      default:
    }
  }

  onTunnelEnd (): void {
    this.upstream = null
    this.logRequest()
    this.lingerAndClose() // what the upstream sent last still reaches the client, then our FIN
  }

  /** The request body can never be completed (the client half-closed): drop the exchange, blame no upstream. */
  private dropIncomplete (): void {
    this.leaveQueue()
    this.flag = 'DC'
    this.status = 499
    this.detachUpstream(true)
    this.logRequest()
    this.phase = 'closed'
    this.input = null
    this.socket.destroy()
  }

  handleClose (): void {
    const ctx = this.ctx
    if (this.queuedIn !== null) {
      // gone while waiting for a connection slot: out of the queue, logged like any client that left
      this.leaveQueue()
      this.flag = 'DC'
      this.status = 499
      this.logRequest()
    }
    if (this.upstream !== null) {
      // mid-exchange: the upstream connection cannot be trusted for reuse
      this.detachUpstream(true)
      if (this.phase === 'tunnel') {
        this.logRequest() // the client ended the tunnel: its one line, as when the upstream ends it
      } else if (this.phase !== 'closed') {
        this.flag = 'DC'
        if (this.status === 0) this.status = 499
        this.logRequest()
      }
    }
    this.releaseActive()
    this.dropOwnUpstream()
    if (this.cacheState !== null) this.cacheState.reset()
    this.phase = 'closed'
    this.input = null
    this.heldHead = null
    this.requestHead = null
    this.initialBody = null
    ctx.clients.delete(this)
    ctx.sweeper.delete(this)
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, W_OPEN_CONNECTIONS, -1)
    if (ctx.clients.size === 0 && ctx.onIdle !== null) ctx.onIdle()
  }

  handleDrain (): void {
    if (this.outputFull) {
      // the client read what we queued: take its next requests
      this.outputFull = false
      this.clearDeadline()
      this.drive()
    }
    // the client took what we held: read more of the response
    const up = this.upstream
    if (up !== null && up.socket.isPaused()) up.socket.resume()
  }
}

function client (socket: net.Socket): ClientConnection {
  return (socket as unknown as Record<symbol, ClientConnection>)[kClient]
}

function driveLater (c: ClientConnection): void {
  c.yielded = false
  c.drive()
}
function onClientData (this: net.Socket, chunk: Buffer): void { client(this).handleData(chunk) }
/** The `onread` callback of a client socket reading into the read arena (worker mode, plain listeners). */
export function onClientRead (this: net.Socket, bytes: number, _arena: Buffer): boolean {
  const c = client(this)
  if (c === undefined) { this.destroy(); return false } // bytes before the request path took the socket: never expected
  deliverRead(c, bytes)
  return true
}
function onClientEnd (this: net.Socket): void { client(this).handleEnd() }
function onClientError (this: net.Socket): void { /* 'close' follows; nothing to add */ }
function onClientClose (this: net.Socket): void { client(this).handleClose() }
function onClientDrain (this: net.Socket): void { client(this).handleDrain() }
function onClientFlushed (this: net.Socket): void { client(this).handleFlushed() }
