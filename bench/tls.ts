/**
 * `npm run bench -- --tls`: HTTPS at the edge, switchyard next to nginx with TLS (same certificate,
 * same upstreams, same load generator, one after the other in the same run):
 *
 *   keep-alive   wrk over HTTPS, keep-alive connections: requests/s and balancer CPU µs per request
 *   handshakes   wrk with `Connection: close`: every request is a new TCP connection and a full TLS
 *                handshake (wrk resumes no session); handshakes per CPU-second of the balancer
 *                ("per core": the balancer's own CPU time, so a 2-core run and a 16-core run compare)
 *
 * Pinning as in bench/load.ts: the balancer gets the first half of the CPUs, wrk and the upstreams
 * the rest. CPU time is utime+stime of the balancer's process tree from /proc (nginx: master and
 * workers). Certificates: one ECDSA P-256 self-signed certificate made with openssl for the run.
 * Writes bench/results/tls-<date-time>.json.
 *
 *   npm run bench -- --tls [--duration S] [--connections N] [--workers N] [--no-nginx]
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { cpuMicrosOfTree } from './proc-cpu'
import {
  ROOT, allowedCpus, freePort, makeTempDir, spawnTracked, startNodeUpstreams, stopAll, stopProcess, waitForPort, which,
  type Managed,
} from './peers'

interface TlsOptions { durationS: number, connections: number, workers: number, nginx: boolean }

function parseTlsArgs (argv: string[]): TlsOptions {
  const cpus = allowedCpus()
  const o: TlsOptions = { durationS: 5, connections: 32, workers: Math.max(1, Math.floor(cpus.length / 2)), nginx: true }
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--tls': break
      case '--duration': o.durationS = Number(argv[++i]); break
      case '--connections': o.connections = Number(argv[++i]); break
      case '--workers': o.workers = Number(argv[++i]); break
      case '--no-nginx': o.nginx = false; break
      default: throw new Error(`bench --tls: unknown option ${argv[i]}`)
    }
  }
  return o
}

interface Run { requestsPerSec: number, requests: number, cpuMicros: number, errors: number }

function wrk (url: string, connections: number, durationS: number, cpus: number[] | null, close: boolean): { requests: number, errors: number } {
  const args = ['-t', '1', '-c', String(connections), '-d', `${durationS}s`, ...(close ? ['-H', 'Connection: close'] : []), url]
  const argv = cpus !== null ? ['taskset', '-c', cpus.join(','), 'wrk', ...args] : ['wrk', ...args]
  const out = execFileSync(argv[0], argv.slice(1), { encoding: 'utf8' })
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const errors = non2xx + (socketErrors === null ? 0 : socketErrors.slice(1).reduce((a, b) => a + Number(b), 0))
  return { requests, errors }
}

async function measure (managed: Managed, port: number, options: TlsOptions, loadCpus: number[] | null, close: boolean): Promise<Run> {
  const url = `https://127.0.0.1:${port}/`
  wrk(url, options.connections, 1, loadCpus, close) // warm-up
  const before = cpuMicrosOfTree(managed.pid)
  const started = process.hrtime.bigint()
  const r = wrk(url, options.connections, options.durationS, loadCpus, close)
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const cpuMicros = cpuMicrosOfTree(managed.pid) - before
  return { requestsPerSec: r.requests / seconds, requests: r.requests, cpuMicros, errors: r.errors }
}

function nginxConfig (dir: string, port: number, upstreamPorts: number[], workers: number, cert: string, key: string): string {
  const user = process.getuid?.() === 0 ? 'user root root;\n' : ''
  return `${user}daemon off;
master_process on;
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream backends {
${upstreamPorts.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`
}

export async function runTlsBench (argv: string[]): Promise<void> {
  const options = parseTlsArgs(argv)
  const cpus = allowedCpus()
  const half = Math.max(1, Math.floor(cpus.length / 2))
  const balancerCpus = cpus.length >= 2 ? cpus.slice(0, half) : null
  const loadCpus = cpus.length >= 2 ? cpus.slice(half) : null
  if (which('wrk') === null) throw new Error('bench --tls needs wrk (apt-get install -y wrk)')
  const dir = makeTempDir('switchyard-tls-bench-')
  const cert = path.join(dir, 'cert.pem')
  const key = path.join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' })
  const upstreams = await startNodeUpstreams(2, loadCpus)
  const rows: Array<{ name: string, keepAlive: Run, handshakes: Run }> = []
  try {
    const port = await freePort()
    const lbConfig = path.join(dir, 'lb.json')
    fs.writeFileSync(lbConfig, JSON.stringify({
      listen: [{ address: `127.0.0.1:${port}`, tls: { certificates: [{ certFile: cert, keyFile: key }] } }],
      workers: options.workers,
      upstreams: upstreams.ports.map((p) => ({ address: `127.0.0.1:${p}` })),
      log: { level: 'warn', access: false },
    }))
    const lb = spawnTracked(process.execPath, [path.join(ROOT, 'dist/src/cli.js'), '--config', lbConfig], { name: 'switchyard', cpus: balancerCpus, stdinPipe: true })
    await waitForPort(lb, port)
    rows.push({ name: `switchyard (${options.workers} worker${options.workers === 1 ? '' : 's'})`, keepAlive: await measure(lb, port, options, loadCpus, false), handshakes: await measure(lb, port, options, loadCpus, true) })
    await stopProcess(lb)
    const nginx = which('nginx')
    if (options.nginx && nginx !== null) {
      const nport = await freePort()
      const ndir = makeTempDir('switchyard-tls-nginx-')
      fs.writeFileSync(path.join(ndir, 'nginx.conf'), nginxConfig(ndir, nport, upstreams.ports, options.workers, cert, key))
      const ng = spawnTracked(nginx, ['-p', `${ndir}/`, '-e', path.join(ndir, 'error.log'), '-c', path.join(ndir, 'nginx.conf')], { name: 'nginx', cpus: balancerCpus })
      await waitForPort(ng, nport)
      rows.push({ name: `nginx (${options.workers} worker${options.workers === 1 ? '' : 's'})`, keepAlive: await measure(ng, nport, options, loadCpus, false), handshakes: await measure(ng, nport, options, loadCpus, true) })
      await stopProcess(ng)
    }
  } finally {
    await stopAll()
  }
  const lines = [
    `HTTPS bench: ${options.connections} connections, ${options.durationS} s per measurement, wrk; balancer CPUs ${balancerCpus?.join(',') ?? 'unpinned'}, load ${loadCpus?.join(',') ?? 'unpinned'}; ${os.cpus()[0]?.model ?? ''}`,
    '',
    '| balancer | keep-alive req/s | CPU µs / request | new handshakes/s | handshakes / CPU-second | errors |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${r.keepAlive.requestsPerSec.toFixed(0)} | ${(r.keepAlive.cpuMicros / Math.max(1, r.keepAlive.requests)).toFixed(1)} | ${r.handshakes.requestsPerSec.toFixed(0)} | ${(r.handshakes.requests / Math.max(1e-9, r.handshakes.cpuMicros / 1e6)).toFixed(0)} | ${r.keepAlive.errors + r.handshakes.errors} |`),
  ]
  if (rows.length === 2) {
    const [s, n] = rows
    const cpuRatio = (s.keepAlive.cpuMicros / s.keepAlive.requests) / (n.keepAlive.cpuMicros / n.keepAlive.requests)
    const hsRatio = (n.handshakes.requests / n.handshakes.cpuMicros) / (s.handshakes.requests / s.handshakes.cpuMicros)
    lines.push('', `switchyard / nginx: CPU per keep-alive request ×${cpuRatio.toFixed(2)} (goal ≤ 1.5), CPU per handshake ×${hsRatio.toFixed(2)} (goal ≤ 1.3)`)
  }
  process.stdout.write(lines.join('\n') + '\n')
  const results = path.join(ROOT, 'bench', 'results')
  fs.mkdirSync(results, { recursive: true })
  fs.writeFileSync(path.join(results, `tls-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ options, balancerCpus, loadCpus, rows }, null, 2))
}
