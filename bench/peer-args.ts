import type * as net from 'node:net'
import { exitWithBench } from './exit-with-bench'

/**
 * The command line every bench peer (bench/node-proxy.ts, bench/http-proxy-peer.ts, bench/relay.ts)
 * takes: switchyard's own `--bind HOST:PORT` and `--upstream HOST:PORT`..., so the load bench starts
 * any of them the way it starts switchyard (`--workers`, `--log-level` and `--no-access-log` are
 * accepted and ignored).
 */
export interface Target {
  host: string
  port: number
}

export interface PeerArgs {
  bind: Target
  upstreams: Target[]
}

function parseHostPort (peer: string, value: string): Target {
  const colon = value.lastIndexOf(':')
  const port = Number.parseInt(value.slice(colon + 1), 10)
  if (colon <= 0 || !Number.isInteger(port)) throw new Error(`${peer}: expected HOST:PORT, got ${value}`)
  return { host: value.slice(0, colon), port }
}

/** `peer` names the program in error messages. */
export function parsePeerArgs (peer: string, argv: string[]): PeerArgs {
  let bind: Target = { host: '127.0.0.1', port: 0 }
  const upstreams: Target[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--bind') bind = parseHostPort(peer, argv[++i])
    else if (arg === '--upstream') upstreams.push(parseHostPort(peer, argv[++i]))
    else if (arg === '--workers' || arg === '--log-level') i++
    else if (arg !== '--no-access-log') throw new Error(`${peer}: unknown argument ${arg}`)
  }
  if (upstreams.length === 0) throw new Error(`${peer}: at least one --upstream`)
  return { bind, upstreams }
}

/**
 * Listen on `bind` and say so the way the load bench waits for (`{"msg":"listening","port":N}` on stdout);
 * a listen error ends the peer. Then exit with the bench (exitWithBench).
 */
export function servePeer (peer: string, server: net.Server, bind: Target): void {
  server.on('error', (err) => {
    process.stderr.write(`${peer}: ${err.message}\n`)
    process.exit(1)
  })
  server.listen(bind.port, bind.host, () => {
    const { port } = server.address() as net.AddressInfo
    process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`)
  })
  exitWithBench()
}
