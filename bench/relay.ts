/**
 * The floor for the load bench (#18): a TCP relay that knows nothing of HTTP. Each client
 * connection gets its own upstream connection (round-robin over the upstreams), and bytes go
 * `data` -> `write` both ways, with backpressure. No parsing, no pooling, no bookkeeping: what
 * Node's own socket I/O costs per request, so every run shows how far switchyard is from it.
 * Written for the bench only; not a proxy anyone should run (no timeouts, no limits, no HTTP).
 *
 *   node dist/bench/relay.js --bind 127.0.0.1:8080 --upstream 127.0.0.1:8081 --upstream 127.0.0.1:8082
 *
 * Takes switchyard's CLI flags like bench/node-proxy.ts (--workers, --log-level, --no-access-log
 * are accepted and ignored). Exits on SIGTERM/SIGINT or when stdin closes.
 */
import * as net from 'node:net'
import { parsePeerArgs, servePeer } from './peer-args'

/** One direction: `from`'s bytes written to `to`, reading paused while `to` is full. */
function relay (from: net.Socket, to: net.Socket): void {
  from.on('data', (chunk: Buffer) => { if (!to.write(chunk)) from.pause() })
  to.on('drain', () => from.resume())
  from.on('end', () => to.end())
  from.on('close', () => to.destroy())
  from.on('error', () => {})
}

function main (): void {
  const { bind, upstreams } = parsePeerArgs('relay', process.argv.slice(2))
  let next = 0
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const target = upstreams[next]
    next = (next + 1) % upstreams.length
    client.setNoDelay(true)
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
    relay(client, upstream)
    relay(upstream, client)
  })
  servePeer('relay', server, bind)
}

main()
