/**
 * The plain node:http reverse proxy peer: what you get in a few lines of Node without switchyard.
 * One thread, node:http server, a keep-alive http.Agent towards the upstreams, round-robin.
 *
 *   node dist/bench/node-proxy.js --bind 127.0.0.1:8080 --upstream 127.0.0.1:8081 --upstream 127.0.0.1:8082
 *
 * It takes switchyard's CLI flags (--workers, --log-level, --no-access-log are accepted and ignored),
 * so `bench/load.ts --balancer-script dist/bench/node-proxy.js` can stand in for the balancer while
 * the real CLI is not there. Prints {"msg":"listening"} on stdout; exits on SIGTERM/SIGINT or when
 * stdin closes.
 */
import * as http from 'node:http'
import { parsePeerArgs, servePeer } from './peer-args'

/** RFC 9110 §7.6.1: connection-specific fields are not forwarded. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
])

function forwardableHeaders (raw: string[]): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (HOP_BY_HOP.has(name)) continue
    const existing = headers[name]
    if (existing === undefined) headers[name] = raw[i + 1]
    else if (Array.isArray(existing)) existing.push(raw[i + 1])
    else headers[name] = [existing, raw[i + 1]]
  }
  return headers
}

function main (): void {
  const { bind, upstreams } = parsePeerArgs('node-proxy', process.argv.slice(2))
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 })
  let next = 0

  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const target = upstreams[next]
    next = (next + 1) % upstreams.length
    const upstreamReq = http.request({
      agent,
      host: target.host,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: forwardableHeaders(req.rawHeaders),
    }, (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, forwardableHeaders(upstreamRes.rawHeaders))
      upstreamRes.pipe(res)
    })
    upstreamReq.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-length': '0' })
        res.end()
      } else {
        res.destroy()
      }
    })
    req.pipe(upstreamReq)
  })
  servePeer('node-proxy', server, bind)
}

main()
