/**
 * The admin listener: status API, Prometheus metrics, upstream drain/enable,
 * config reload and the dashboard. It runs on the primary and is the control
 * plane, so node:http is fine here; the data path never waits on it (every
 * number it shows is read from shared memory).
 *
 * Start it after the balancer listens, close it before the balancer stops:
 *
 *   lb.admin = await startAdmin(lb)     // uses lb.config.admin
 *   await lb.admin.close()
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseHostPort } from '../config/types'
import { ConfigError } from '../errors'
import { logger } from '../log'
import { TokenCheck } from './auth'
import { CounterTotals } from './totals'
import { createMetrics } from './prometheus'
import { hasTlsStatus, registerTlsFamilies } from '../tls/status'
import { version } from '../version'
import { handleRequest, type AdminContext } from './routes'
import type { AdminTarget } from './target'

export interface AdminOptions {
  /** HOST:PORT; default lb.config.admin.listen. Port 0 picks a free port (see `address`). */
  listen?: string
  /** Bearer token; default lb.config.admin.token (and its replacement on reload). */
  token?: string
  /** How often counters are folded into 64-bit totals. */
  sampleIntervalMs?: number
}

export interface AdminServer {
  /** The bound address (the real port when listen asked for 0). */
  readonly address: { host: string, port: number }
  /** `http://host:port` for the bound address. */
  readonly url: string
  close (): Promise<void>
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host.startsWith('127.') || host === '::1'
}

export async function startAdmin (lb: AdminTarget, options: AdminOptions = {}): Promise<AdminServer> {
  const listen = options.listen ?? lb.config.admin?.listen
  if (listen === undefined) throw new ConfigError(['/admin/listen: required to start the admin server'], 'admin')
  const { host, port } = parseHostPort(listen)

  // The token in force: an explicit one is fixed; otherwise the config's, so a
  // reload can rotate it, as long as the reloaded config still describes this
  // listener (a config without it keeps the token the server started with).
  const fixed = options.token !== undefined ? new TokenCheck(options.token) : null
  const startToken = lb.config.admin?.token
  let current: { source: string | undefined, check: TokenCheck | null } = {
    source: startToken,
    check: startToken !== undefined ? new TokenCheck(startToken) : null,
  }
  const token = (): TokenCheck | null => {
    if (fixed !== null) return fixed
    const admin = lb.config.admin
    const wanted = admin !== undefined && admin.listen === listen ? admin.token : current.source
    if (wanted !== current.source) current = { source: wanted, check: wanted !== undefined ? new TokenCheck(wanted) : null }
    return current.check
  }
  if (token() === null && !isLoopback(host)) {
    throw new ConfigError(['/admin/listen: a non-loopback admin listener needs /admin/token'], 'admin')
  }

  const totals = new CounterTotals(lb.state)
  totals.sample(lb.table)
  const metrics = createMetrics(() => ({
    state: lb.state, table: lb.table, totals, info: { version, mode: lb.mode, startedAtMs: lb.startedAt },
  }))
  if (hasTlsStatus(lb)) registerTlsFamilies(metrics, lb)
  // a cluster's families (switchyard_cluster_*, src/cluster/node.ts)
  lb.cluster?.registerMetrics(metrics)
  const ctx: AdminContext = { lb, totals, metrics, token, listen }
  const server = http.createServer((req, res) => handleRequest(ctx, req, res))
  server.headersTimeout = 5000
  server.requestTimeout = 10_000
  server.keepAliveTimeout = 5000
  server.on('clientError', (_err, socket) => { socket.destroy() })

  await new Promise<void>((resolve, reject) => {
    // say which listener: "EADDRINUSE 127.0.0.1:9090" alone reads like the proxy's own port
    const fail = (err: Error): void => reject(new Error(`admin listener (admin.listen ${listen}): ${err.message}`, { cause: err }))
    server.once('error', fail)
    server.listen({ host, port }, () => {
      server.off('error', fail)
      resolve()
    })
  })
  server.on('error', (err) => logger.error({ err: err.message }, 'admin listener error'))
  totals.start(options.sampleIntervalMs ?? 1000, () => lb.table)

  const bound = server.address() as AddressInfo
  const address = { host: bound.address, port: bound.port }
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
  logger.info({ address: url, auth: token() !== null }, 'admin listening')

  let closing: Promise<void> | null = null
  return {
    address,
    url,
    close: async () => {
      if (closing === null) {
        closing = new Promise<void>((resolve) => {
          totals.stop()
          server.close(() => resolve())
          server.closeAllConnections()
        })
      }
      await closing
    },
  }
}
