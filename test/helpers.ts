/**
 * Shared test helpers: real servers on loopback port 0, raw sockets, polling
 * with a deadline. Every server a helper starts is returned with a close().
 */
import * as net from 'node:net'
import * as http from 'node:http'
import { Worker } from 'node:worker_threads'
import type { AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'

export async function waitFor (condition: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await condition()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export interface TestServer {
  port: number
  address: string
  /** requests received (http servers) or connections accepted (raw servers) */
  count: number
  close (): Promise<void>
}

/** What startEchoUpstream answers (its JSON body): the request as the upstream received it. */
export interface EchoReply {
  name: string
  method: string
  url: string
  headers: Record<string, string>
  rawHeaders: string[]
  body: string
  bodyLength: number
}

/** An echo upstream: answers with JSON of what it received (method, url, headers, body) and its own name. */
export async function startEchoUpstream (name = 'upstream', onRequest?: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean): Promise<TestServer & { server: http.Server }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      result.count++
      const body = Buffer.concat(chunks)
      if (onRequest !== undefined && onRequest(req, res, body)) return
      const payload = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: body.toString('latin1'), bodyLength: body.length })
      // Content-Length, not chunked: splitResponses() and pipelining tests frame on it
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name, 'content-length': Buffer.byteLength(payload) })
      res.end(payload)
    })
  })
  const result = await listenHttp(server, 30_000)
  return result
}

/** `server` listening on a free loopback port, as a TestServer whose close() also ends its kept-alive connections. */
export async function listenHttp (server: http.Server, keepAliveTimeoutMs: number): Promise<TestServer & { server: http.Server }> {
  server.keepAliveTimeout = keepAliveTimeoutMs
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    count: 0,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A raw TCP server: `onConnection` writes exact wire bytes. Tracks and destroys its sockets on close. */
export async function startRawServer (onConnection: (socket: net.Socket) => void, port = 0): Promise<TestServer> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    result.count++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onConnection(socket)
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  const actual = (server.address() as AddressInfo).port
  const result = {
    port: actual,
    address: `127.0.0.1:${actual}`,
    count: 0,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return result
}

/**
 * A port that was free a moment ago, for a server the test starts itself. Not for an upstream
 * that must stay down: the kernel hands the same port to the next listen(0), which in a parallel
 * suite is another test's server (a "dead" upstream once answered 431). Use refusedPort() there.
 */
export async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** The low end of the kernel's ephemeral port range (listen(0) and connections' source ports). */
function ephemeralLow (): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(low) && low > 2048) return low
  } catch { /* not Linux: the IANA range starts at 49152, Linux's default at 32768 */ }
  return 32768
}

/** Whether a connection to 127.0.0.1:port is refused (nothing listens). */
async function connectRefused (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(false) })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

/**
 * A loopback port where connections are refused for the whole run, for an upstream (or Redis, or
 * collector) that must be down. It lies below the kernel's ephemeral range, so no listen(0) in the
 * suite and no connection's own source port (a self-connect) can take it; checked refused here.
 */
export async function refusedPort (): Promise<number> {
  const low = ephemeralLow()
  const from = Math.max(1024, low - 8192)
  for (let attempt = 0; attempt < 32; attempt++) {
    const port = from + Math.floor(Math.random() * (low - from))
    if (await connectRefused(port)) return port
  }
  throw new Error(`no refused port found in ${from}-${low - 1}`)
}

/**
 * Send raw bytes, collect everything until the server closes or `until(received)`
 * says enough, or the timeout passes (then resolves with what arrived, timedOut = true).
 */
export async function rawExchange (port: number, data: Buffer | string | Array<Buffer | string>, opts: { until?: (received: Buffer) => boolean, timeoutMs?: number, delayMs?: number } = {}): Promise<{ data: Buffer, text: string, closed: boolean, timedOut: boolean }> {
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  let closed = false
  let timedOut = false
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(() => { timedOut = true; finish() }, opts.timeoutMs ?? 5000)
    function finish (): void { clearTimeout(timer); socket.destroy(); resolve() }
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      if (opts.until?.(Buffer.concat(chunks)) === true) finish()
    })
    socket.on('end', () => { closed = true; finish() })
    socket.on('error', () => { closed = true; finish() })
  })
  const parts = Array.isArray(data) ? data : [data]
  for (const part of parts) {
    if (socket.destroyed) break
    socket.write(part)
    if (opts.delayMs !== undefined && parts.length > 1) await new Promise((resolve) => setTimeout(resolve, opts.delayMs))
  }
  await done
  const all = Buffer.concat(chunks)
  return { data: all, text: all.toString('latin1'), closed, timedOut }
}

/** Count complete HTTP responses in a byte stream with Content-Length bodies (test-side helper). */
export function splitResponses (text: string): Array<{ status: number, headers: Record<string, string>, body: string }> {
  const out: Array<{ status: number, headers: Record<string, string>, body: string }> = []
  let rest = text
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const lines = rest.slice(0, end).split('\r\n')
    const status = Number(lines[0].split(' ')[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const c = line.indexOf(':')
      headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim()
    }
    const length = Number(headers['content-length'] ?? 0)
    out.push({ status, headers, body: rest.slice(end + 4, end + 4 + length) })
    rest = rest.slice(end + 4 + length)
  }
  return out
}

/** http.request wrapper with an agent-less, keep-alive-free default. */
export async function httpRequest (port: number, opts: http.RequestOptions & { body?: string | Buffer } = {}): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...opts }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/**
 * Run a test worker thread (`file`, compiled .js) with `workerData` and resolve with the one message it
 * posts. The worker is expected to end on its own after reporting; its exit is awaited rather than forced:
 * on Node 20, terminate() while V8 still compiles in the background for the worker can abort the whole
 * process (nodejs/node#54918). Only a worker still alive 10 s after reporting is terminated.
 */
export async function runThreadJob<R> (file: string, workerData: unknown): Promise<R> {
  const worker = new Worker(file, { workerData })
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve))
  const report = await new Promise<R>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
    void exited.then((code) => reject(new Error(`worker exited with ${code} before reporting`)))
  })
  const timer = setTimeout(() => { void worker.terminate() }, 10_000)
  await exited
  clearTimeout(timer)
  return report
}
