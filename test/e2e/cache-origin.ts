/**
 * The upstream of the cache e2e suites (cache.test.ts, cache-conformance.test.ts):
 * node:http with a handler per path that counts requests and answers with
 * exactly the caching headers each test needs.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'

// ---- the upstream ------------------------------------------------------------------

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void

export interface SeenRequest { method: string, url: string, headers: http.IncomingHttpHeaders }

/** node:http upstream: one handler per path (query ignored), a request count and a log per path. */
export class Origin {
  readonly server: http.Server
  port = 0
  total = 0
  private readonly handlers = new Map<string, Handler>()
  private readonly seenByPath = new Map<string, SeenRequest[]>()

  constructor () {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        this.total++
        const path = (req.url ?? '/').split('?')[0]
        const seen = this.seenByPath.get(path) ?? []
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
        this.seenByPath.set(path, seen)
        const handler = this.handlers.get(path)
        if (handler === undefined) { send(res, 404, {}, `no handler for ${path}\n`); return }
        handler(req, res, Buffer.concat(chunks))
      })
    })
    this.server.keepAliveTimeout = 30_000
  }

  async listen (): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.port = (this.server.address() as AddressInfo).port
  }

  get address (): string { return `127.0.0.1:${this.port}` }

  route (path: string, handler: Handler): void { this.handlers.set(path, handler) }

  /** Requests that reached the upstream for `path`. */
  count (path: string): number { return this.seenByPath.get(path)?.length ?? 0 }

  seen (path: string): SeenRequest[] { return this.seenByPath.get(path) ?? [] }

  async close (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** A Content-Length response. */
export function send (res: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body: string | Buffer): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body
  res.writeHead(status, { 'content-type': 'text/plain', ...headers, 'content-length': bytes.length })
  res.end(status === 304 ? undefined : bytes)
}

/** A handler answering `body` with `headers` every time. */
export function fixed (headers: http.OutgoingHttpHeaders, body: string | Buffer, status = 200): Handler {
  return (_req, res) => send(res, status, headers, body)
}
