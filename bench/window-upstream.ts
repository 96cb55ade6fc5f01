/**
 * The cluster bench's upstream (bench/cluster.ts), its own process: answers
 * every request `200 ok` and counts the requests that reach it per window,
 * floor(Date.now() / windowMs), as they arrive. A request reaches it in the
 * same turn of the balancer's event loop that admitted it, so this counts
 * admissions by window far closer to the balancer's (and Redis's: same host,
 * same clock) view than response times at a busy load generator would.
 *
 *   node dist/bench/window-upstream.js --port N --window-ms MS
 *   GET /__counts -> {"<window>": count, ...}
 */
import * as http from 'node:http'
import { exitWithBench } from './exit-with-bench'

let port = 0
let windowMs = 1000
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--port') port = Number(argv[++i])
  else if (argv[i] === '--window-ms') windowMs = Number(argv[++i])
}
const counts = new Map<number, number>()
const server = http.createServer((req, res) => {
  if (req.url === '/__counts') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(Object.fromEntries(counts)))
    return
  }
  const w = Math.floor(Date.now() / windowMs)
  counts.set(w, (counts.get(w) ?? 0) + 1)
  res.writeHead(200, { 'content-length': '2' })
  res.end('ok')
})
server.keepAliveTimeout = 60_000
server.listen(port, '127.0.0.1', () => { console.log(JSON.stringify({ msg: 'listening', port })) })
exitWithBench()
