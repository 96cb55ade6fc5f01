/**
 * Background revalidation for stale-while-revalidate (RFC 5861 §3): the
 * client already has the stale entry; this thread holds the key's fill
 * claim, so exactly one revalidation per entry runs across all threads (a
 * request on any thread that finds the claim taken serves the stale entry
 * too, or waits for the fill when past the window), and asks the upstream
 * with the entry's validators:
 *
 *   304                  -> the stored head takes its fields (RFC 9111 §4.3.4) and is stored fresh
 *   a storable response  -> stored in place of the old one
 *   5xx, error, timeout  -> the entry stays as it is (stale-if-error may still use it)
 *   other uncacheable    -> the entry is removed (the origin no longer lets it be kept)
 *
 * Then the claim is released. The request goes out through node:http on a
 * connection of its own (it has no client connection to ride on), opened as
 * the request path opens one (src/tls/upstream.ts: TLS when the upstream has
 * `tls`, the client's PROXY header first when it has `proxyProtocol`), to the
 * upstream the balancer picks for the request (CacheUser.revalidationUpstream), with the
 * client request's end-to-end fields (for Vary) minus its conditionals and
 * Range; it is bounded by the claim's lifetime. It runs once per stale
 * window per entry, so the closures it makes are not on the hit path.
 */
import * as http from 'node:http'
import type { HeadParser } from '../http/head-parser'
import type { CacheEntry, CacheEntryInput } from '../cache/entry'
import {
  responseFreshness, correctedInitialAgeSec, varyNames, parseHttpDate, staleAllowed, CacheControl, CACHE_LOOKUP,
} from '../cache/policy'
import { varyValues } from '../cache/key'
import { mergeNotModified, storedHeadFrom, fieldsOfRaw, FieldsView, type FieldPairs } from '../cache/stored-head'
import type { CacheHook, RevalidationTarget } from './cache-hook'
import { openUpstreamSocket } from '../tls/upstream'

/** Request fields never copied into a background revalidation. */
const NOT_FORWARDED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'http2-settings', 'transfer-encoding',
  'content-length', 'expect', 'host', 'range', 'if-range', 'if-none-match', 'if-modified-since', 'if-match',
  'if-unmodified-since', 'cache-control', 'pragma',
])

/** What a background revalidation needs, copied out of the request and the entry (both are reused right after). */
export class Revalidation {
  readonly key: string
  /** The upstream to ask, and the PROXY header its connection starts with. */
  readonly upstream: RevalidationTarget
  readonly host: string
  readonly path: string
  readonly fields: Record<string, string> = {}
  readonly requestView: FieldsView
  readonly status: number
  readonly head: Buffer
  readonly body: Buffer
  readonly etag: string | null
  readonly lastModified: string | null
  readonly hasAuthorization: boolean
  done = false

  constructor (key: string, upstream: RevalidationTarget, p: HeadParser, e: CacheEntry) {
    this.key = key
    this.upstream = upstream
    this.host = p.host()
    this.path = p.path()
    const pairs: FieldPairs = []
    const connection = (p.header('connection') ?? '').toLowerCase().split(',').map((t) => t.trim())
    for (let i = 0; i < p.headerCount; i++) {
      const name = p.fieldName(i).toLowerCase()
      if (NOT_FORWARDED.has(name) || connection.includes(name)) continue
      const value = p.fieldValue(i)
      pairs.push([name, value])
      const had = this.fields[name]
      this.fields[name] = had === undefined ? value : had + (name === 'cookie' ? '; ' : ', ') + value
    }
    this.fields.host = this.host
    this.requestView = new FieldsView(pairs)
    this.status = e.status
    this.head = e.head
    this.body = e.body
    this.etag = e.etag
    this.lastModified = e.lastModified
    this.hasAuthorization = this.fields.authorization !== undefined
  }
}

export function revalidateInBackground (hook: CacheHook, job: Revalidation): void {
  const { entry, prefix } = job.upstream
  const headers: Record<string, string> = { ...job.fields }
  if (job.etag !== null) headers['if-none-match'] = job.etag
  if (job.lastModified !== null) headers['if-modified-since'] = job.lastModified
  const sentAt = Date.now()
  // no agent: a connection of its own (closed after the response), opened like the request path's
  const req = http.request({
    host: entry.host,
    port: entry.port,
    method: 'GET',
    path: job.path,
    headers,
    createConnection: () => openUpstreamSocket(entry, prefix),
    timeout: hook.fillTtlMs,
  }, (res) => {
    const chunks: Buffer[] = []
    let bytes = 0
    res.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes <= hook.store.maxEntryBytes) chunks.push(chunk)
    })
    res.on('end', () => {
      if (!job.done) onResponse(hook, job, res, bytes <= hook.store.maxEntryBytes ? Buffer.concat(chunks, bytes) : null, sentAt)
      finish(hook, job)
    })
    res.on('error', () => finish(hook, job))
  })
  req.on('timeout', () => req.destroy(new Error('background revalidation timed out')))
  req.on('error', () => finish(hook, job))
  req.end()
}

/** Release the claim, once, unless a store took it over (hook.commit releases it when stored). */
function finish (hook: CacheHook, job: Revalidation): void {
  if (job.done) return
  job.done = true
  hook.store.releaseFill(job.key)
}

function onResponse (hook: CacheHook, job: Revalidation, res: http.IncomingMessage, body: Buffer | null, sentAt: number): void {
  const now = Date.now()
  const status = res.statusCode ?? 0
  const fields = fieldsOfRaw(res.rawHeaders)
  const received = new FieldsView(fields, status)
  const config = hook.config
  const cc = new CacheControl()
  let head: Buffer
  let stored: Buffer
  let view: FieldsView
  if (status === 304) {
    head = mergeNotModified(job.head, fields)
    view = FieldsView.ofStored(head, job.status)
    stored = job.body
  } else {
    // a 5xx keeps the stale entry (stale-if-error may still serve it); a part is never stored
    if (body === null || status === 206 || status >= 500) return
    head = storedHeadFrom(status, res.statusMessage ?? '', fields, body.length)
    view = received
    stored = body
  }
  const freshFor = responseFreshness(view, CACHE_LOOKUP, job.hasAuthorization, config.cacheAuthorized, now, cc, hook.targetedField)
  const names = freshFor < 0 ? null : varyNames(view)
  if (freshFor < 0 || (names !== null && names.includes('*'))) {
    if (status < 500) hook.invalidate(job.key)
    return
  }
  const date = received.header('date')
  const dateMs = date === null ? NaN : parseHttpDate(date, now)
  const input: CacheEntryInput = {
    status: status === 304 ? job.status : status,
    head,
    body: stored,
    storedAtMs: now,
    responseDateMs: Number.isNaN(dateMs) ? now : dateMs,
    initialAgeSec: correctedInitialAgeSec(received, sentAt, now),
    freshForMs: freshFor,
    etag: view.header('etag'),
    lastModified: view.header('last-modified'),
    varyNames: names,
    varyValues: names === null ? null : varyValues(names, job.requestView),
    staleWhileRevalidateSec: cc.staleWhileRevalidateSec,
    staleIfErrorSec: cc.staleIfErrorSec,
    neverStale: !staleAllowed(cc),
  }
  // the claim goes with the store: released once it is in (or given up)
  job.done = true
  hook.commit(job.key, input, true)
}
