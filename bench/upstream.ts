/**
 * A fast upstream for the load benchmark, run as its own process:
 *
 *   node dist/bench/upstream.js --port 8081 [--impl net|http] [--body ok]
 *
 * `net` (default) answers every request head with the same pre-built `200` response and keeps the
 * connection open, so the upstream costs as little CPU as possible and the numbers measure the balancer.
 * It only understands body-less requests (the bench sends GET): a request ends at the empty line
 * that closes its head (RFC 9112 §2.1). Pipelined requests in one chunk get their responses in one write.
 * `http` is the same on node:http, for comparison.
 *
 * Prints {"msg":"listening","port":N} once bound; exits on SIGTERM/SIGINT or when stdin closes
 * (the bench keeps a pipe open, so a killed bench does not leave upstreams behind).
 */
import * as http from 'node:http'
import * as net from 'node:net'
import { exitWithBench } from './exit-with-bench'

const CR = 0x0d
const LF = 0x0a

interface Options {
  port: number
  impl: 'net' | 'http'
  body: string
}

function parseArgs (argv: string[]): Options {
  const options: Options = { port: 0, impl: 'net', body: 'ok' }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = argv[++i]
    if (arg === '--port') options.port = Number.parseInt(value, 10)
    else if (arg === '--impl' && (value === 'net' || value === 'http')) options.impl = value
    else if (arg === '--body') options.body = value
    else throw new Error(`upstream: unknown argument ${arg} ${value ?? ''}`)
  }
  return options
}

/** Per-socket scanner state: how much of "\r\n\r\n" the previous chunk ended with. */
interface ScanSocket extends net.Socket {
  crlfMatched: number
}

function makeNetServer (response: Buffer): net.Server {
  return net.createServer({ noDelay: true }, (socket) => {
    const scanSocket = socket as ScanSocket
    scanSocket.crlfMatched = 0
    socket.on('data', onData)
    socket.on('error', onError)
  }).on('error', fail)

  function onData (this: ScanSocket, chunk: Buffer): void {
    // Count request heads ending in this chunk; the match state survives chunk boundaries.
    let matched = this.crlfMatched
    let complete = 0
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]
      if (b === (matched % 2 === 0 ? CR : LF)) {
        matched++
        if (matched === 4) {
          complete++
          matched = 0
        }
      } else {
        matched = b === CR ? 1 : 0
      }
    }
    this.crlfMatched = matched
    if (complete === 1) this.write(response)
    else if (complete > 1) this.write(Buffer.concat(new Array<Buffer>(complete).fill(response)))
  }
}

function onError (this: net.Socket): void {
  this.destroy()
}

function makeHttpServer (body: string): http.Server {
  const length = String(Buffer.byteLength(body))
  return http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': length })
    res.end(body)
  }).on('error', fail)
}

function fail (err: Error): void {
  process.stderr.write(`upstream: ${err.message}\n`)
  process.exit(1)
}

function main (): void {
  const options = parseArgs(process.argv.slice(2))
  const response = Buffer.from(
    `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(options.body)}\r\n\r\n` +
    options.body)
  const server = options.impl === 'net' ? makeNetServer(response) : makeHttpServer(options.body)
  server.listen(options.port, '127.0.0.1', () => {
    const { port } = server.address() as net.AddressInfo
    process.stdout.write(`${JSON.stringify({ msg: 'listening', port, impl: options.impl })}\n`)
  })
  exitWithBench()
}

main()
