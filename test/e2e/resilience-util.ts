/**
 * Helpers for the resilience suites (retries, Retry-After, Proxy-Status,
 * queue, slow start): a scriptable upstream that names itself, counts the
 * requests it saw and in flight, and answers as each test says.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Reply { status: number, headers?: Record<string, string>, delayMs?: number, destroy?: boolean }

export interface Scripted {
  name: string
  port: number
  address: string
  /** Requests received. */
  count: number
  /** Requests being handled now, and the most at once. */
  inFlight: number
  maxInFlight: number
  /** Bodies received, in order. */
  bodies: string[]
  close: () => Promise<void>
}

/** An upstream answering `reply(n, req)` (n counts from 0), naming itself in x-upstream and the body. */
export async function startScripted (name: string, reply: (n: number, req: http.IncomingMessage) => Reply = () => ({ status: 200 })): Promise<Scripted> {
  const timers = new Set<NodeJS.Timeout>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const n = up.count++
      up.bodies.push(Buffer.concat(chunks).toString())
      up.inFlight++
      if (up.inFlight > up.maxInFlight) up.maxInFlight = up.inFlight
      const r = reply(n, req)
      const answer = (): void => {
        up.inFlight--
        if (r.destroy === true) { req.socket.destroy(); return }
        if (res.destroyed) return
        const body = `${name} ${r.status}`
        res.writeHead(r.status, { 'x-upstream': name, 'content-length': body.length, ...r.headers })
        res.end(body)
      }
      if ((r.delayMs ?? 0) <= 0) { answer(); return }
      const t = setTimeout(() => { timers.delete(t); answer() }, r.delayMs)
      timers.add(t)
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const up: Scripted = {
    name,
    port,
    address: `127.0.0.1:${port}`,
    count: 0,
    inFlight: 0,
    maxInFlight: 0,
    bodies: [],
    close: async () => {
      for (const t of timers) clearTimeout(t)
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return up
}

export interface Answer { status: number, upstream: string, body: string, headers: http.IncomingHttpHeaders, error: string }

/** One request on its own connection; status 0 with the error when it fails. */
export async function send (port: number, opts: { method?: string, path?: string, headers?: Record<string, string>, body?: string, timeoutMs?: number } = {}): Promise<Answer> {
  return await new Promise((resolve) => {
    let settled = false
    const done = (a: Answer): void => { if (!settled) { settled = true; clearTimeout(timer); resolve(a) } }
    const headers: Record<string, string | number> = { ...opts.headers }
    if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body)
    const req = http.request({ host: '127.0.0.1', port, agent: false, method: opts.method ?? 'GET', path: opts.path ?? '/', headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => done({ status: res.statusCode ?? 0, upstream: String(res.headers['x-upstream'] ?? ''), body: Buffer.concat(chunks).toString(), headers: res.headers, error: '' }))
      res.on('error', (err) => done({ status: 0, upstream: '', body: '', headers: {}, error: err.message }))
    })
    const timer = setTimeout(() => { req.destroy(); done({ status: 0, upstream: '', body: '', headers: {}, error: 'timeout' }) }, opts.timeoutMs ?? 10_000)
    req.on('error', (err) => done({ status: 0, upstream: '', body: '', headers: {}, error: err.message }))
    req.end(opts.body)
  })
}
