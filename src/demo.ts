#!/usr/bin/env node
/**
 * `npm run demo`: two small upstreams on 127.0.0.1:8001 and :8002, switchyard
 * in front of them with active health checks, and the admin dashboard.
 * Reload the page to watch the answers alternate; stop one upstream (or drain
 * it from the dashboard) to watch traffic move. Ctrl-C stops everything.
 *
 *   node dist/src/demo.js [--port 8888] [--admin-port 9090] [--workers N]
 */
import * as http from 'node:http'
import { start } from './index'
import type { Switchyard } from './primary/server'
import { startAdmin, type AdminServer } from './admin/server'

const UPSTREAM_PORTS = [8001, 8002] as const

const usage = `Usage: node dist/src/demo.js [--port N] [--admin-port N] [--workers N]

  --port N         balancer port (default 8888)
  --admin-port N   admin API and dashboard port (default 9090)
  --workers N      worker threads, 0 = sequential (default: one per CPU)
`

interface DemoOptions { port: number, adminPort: number, workers: number | null }

function parseFlags (argv: readonly string[]): DemoOptions {
  const options: DemoOptions = { port: 8888, adminPort: 9090, workers: null }
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2)
    const value = (): number => {
      const text = inline ?? argv[++i]
      if (text === undefined || !/^\d+$/.test(text)) throw new Error(`${flag} expects a whole number`)
      return Number(text)
    }
    switch (flag) {
      case '--port': options.port = value(); break
      case '--admin-port': options.adminPort = value(); break
      case '--workers': options.workers = value(); break
      case '-h': case '--help': process.stdout.write(usage); process.exit(0); break
      default: throw new Error(`unknown option ${flag}`)
    }
  }
  return options
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function page (port: number, path: string): string {
  const hue = port === 8001 ? 210 : 330
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>demo upstream ${port}</title>
<style>body{font:18px system-ui,sans-serif;margin:3em;color:#1f2328}
.box{display:inline-block;padding:1em 1.5em;border-radius:8px;background:hsl(${hue} 80% 92%);border:2px solid hsl(${hue} 60% 45%)}</style>
</head><body><div class="box"><h1>served by demo upstream ${port}</h1>
<p>path: <code>${escapeHtml(path)}</code> &middot; ${new Date().toISOString()}</p></div>
<p>Reload to be balanced to the other upstream.</p></body></html>
`
}

async function startUpstream (port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume()
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok\n')
      return
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'x-demo-upstream': String(port), 'cache-control': 'no-store' })
    res.end(page(port, req.url ?? '/'))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  return server
}

async function closeServer (server: http.Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

async function main (): Promise<void> {
  let options: DemoOptions
  try {
    options = parseFlags(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n${usage}`)
    process.exit(2)
  }

  const upstreams: http.Server[] = []
  let lb: Switchyard | null = null
  let admin: AdminServer | null = null
  let stopping: Promise<void> | null = null
  const stopAll = async (): Promise<void> => {
    stopping ??= (async () => {
      await admin?.close()
      await lb?.stop(2000)
      await Promise.all(upstreams.map(closeServer))
    })()
    await stopping
  }

  // Handlers first: a signal during start-up closes what has started and
  // exits (process.exit also ends anything still starting).
  let signals = 0
  const shutdown = (signal: string): void => {
    if (++signals > 1) process.exit(1)
    process.stdout.write(`\n${signal}: stopping\n`)
    stopAll().then(() => process.exit(0), (err: Error) => {
      process.stderr.write(`demo: error while stopping: ${err.message}\n`)
      process.exit(1)
    })
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))

  try {
    for (const port of UPSTREAM_PORTS) upstreams.push(await startUpstream(port))
    lb = await start({
      listen: `127.0.0.1:${options.port}`,
      ...(options.workers !== null ? { workers: options.workers } : {}),
      upstreams: UPSTREAM_PORTS.map((port) => ({ address: `127.0.0.1:${port}` })),
      healthCheck: { active: { path: '/health', intervalMs: 1000, timeoutMs: 500 } },
      log: { level: 'warn', access: false },
    })
    // started here rather than through config.admin so the demo does not
    // depend on how Switchyard.start wires the admin listener
    admin = await startAdmin(lb, { listen: `127.0.0.1:${options.adminPort}` })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    process.stderr.write(`demo: cannot start: ${e.message}${e.code === 'EADDRINUSE' ? ' (is another demo running? see --help for other ports)' : ''}\n`)
    await stopAll()
    process.exit(1)
  }

  process.stdout.write(`
switchyard demo (${lb.mode === 'sequential' ? 'sequential mode' : `${lb.config.workers} worker threads`})
  balancer     http://127.0.0.1:${lb.address.port}/
  dashboard    ${admin.url}/
  status API   ${admin.url}/api/status
  metrics      ${admin.url}/metrics
  upstreams    ${UPSTREAM_PORTS.map((p) => `http://127.0.0.1:${p}/`).join('  ')}

Try:  curl -s http://127.0.0.1:${lb.address.port}/ | grep 'served by'
      curl -s -X POST ${admin.url}/api/upstreams/u0/drain
Ctrl-C to stop.
`)
}

void main()
