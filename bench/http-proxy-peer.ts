/**
 * The http-proxy peer (#18: "Sequential mode ≥ 4× http-proxy's requests/s"): the npm package
 * `http-proxy` (node-http-proxy), the usual way to put a reverse proxy in front of Node upstreams,
 * with the options of its README that a production reverse proxy sets: `createProxyServer` with a
 * keep-alive http.Agent (`agent`; without one it sends `Connection: close` upstream and opens a
 * connection per request) and `xfwd: true`, so it adds X-Forwarded-For/-Port/-Proto as switchyard
 * adds X-Forwarded-For. One thread, a node:http server in front, round-robin over the upstreams,
 * a 502 when the upstream fails (without an 'error' listener http-proxy throws). Everything else is
 * the package's own behaviour, left as it is: e.g. it copies the client's request fields and the
 * upstream's response fields as they come, hop-by-hop ones (Connection, Keep-Alive) included.
 *
 *   node dist/bench/http-proxy-peer.js --bind 127.0.0.1:8080 --upstream 127.0.0.1:8081 --upstream 127.0.0.1:8082
 *
 * Like bench/node-proxy.ts it takes switchyard's CLI flags (--workers, --log-level, --no-access-log
 * are accepted and ignored), prints {"msg":"listening","port":N} on stdout and exits on
 * SIGTERM/SIGINT or when stdin closes. A devDependency: written for the bench, never shipped.
 */
import * as http from 'node:http'
import httpProxy from 'http-proxy'
import { parsePeerArgs, servePeer } from './peer-args'

function main (): void {
  const { bind, upstreams } = parsePeerArgs('http-proxy-peer', process.argv.slice(2))
  // the same pool settings as bench/node-proxy.ts, so the two Node rows differ only in the proxy code
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 })
  const proxy = httpProxy.createProxyServer({ agent, xfwd: true })
  // One options object per upstream, built once: a target given as an object is used as it is
  // (a string would be url.parse()d on every request).
  const perTarget: httpProxy.ServerOptions[] = upstreams.map((u) => ({
    target: { protocol: 'http:', host: u.host, port: u.port },
  }))
  let next = 0

  proxy.on('error', (_err, _req, res) => {
    // res is a ServerResponse for web requests (a net.Socket only for WebSocket upgrades, unused here)
    if (!(res instanceof http.ServerResponse)) {
      res.destroy()
    } else if (!res.headersSent) {
      res.writeHead(502, { 'content-length': '0' })
      res.end()
    } else {
      res.destroy()
    }
  })

  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const target = perTarget[next]
    next = (next + 1) % perTarget.length
    proxy.web(req, res, target)
  })
  servePeer('http-proxy-peer', server, bind)
}

main()
