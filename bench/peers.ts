/**
 * Processes the load benchmark starts, and the reference peers it measures switchyard against.
 *
 * Every child is spawned `detached` (its own process group) and tracked here, so one call stops the
 * whole tree (nginx's master and workers, a `taskset` exec, a load generator) on normal exit, on an
 * error and on Ctrl-C. Temp dirs (peer configs) are tracked the same way and removed on exit.
 *
 * Peers are balancers configured like switchyard: round-robin over the same upstreams, keep-alive
 * towards them, no access log.
 *   nginx      `upstream { keepalive }` + `proxy_http_version 1.1` + empty Connection header
 *              (without these nginx opens a new upstream connection per request).
 *   haproxy    `balance roundrobin`, `http-reuse always`, nbthread = CPUs given to the balancer.
 *   node-proxy bench/node-proxy.ts: node:http server + keep-alive http.Agent, one thread.
 *   http-proxy bench/http-proxy-peer.ts: the npm package http-proxy (node-http-proxy, #18's yardstick),
 *              keep-alive http.Agent, xfwd, one thread.
 *   node-relay bench/relay.ts: no HTTP at all, a TCP relay with one upstream connection per client
 *              connection: the floor of what Node's socket I/O costs (a reference, not a balancer).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

/** Project root: this file runs from dist/bench/. */
export const ROOT = path.resolve(__dirname, '..', '..')

// ---------------------------------------------------------------------------------------------
// Tools on PATH
// ---------------------------------------------------------------------------------------------

/** nginx and haproxy live in /usr/sbin, which a non-root PATH often lacks. */
const EXTRA_PATH = ['/usr/local/sbin', '/usr/sbin', '/sbin']

export function which (command: string): string | null {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).concat(EXTRA_PATH)
  for (const dir of dirs) {
    if (dir === '') continue
    const candidate = path.join(dir, command)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return null
}

/** First line `command args` prints (stdout or stderr: nginx -v and wrk -v use stderr), or ''. */
export function versionOf (command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 })
  const text = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.trim()
  return text.split('\n')[0].trim()
}

// ---------------------------------------------------------------------------------------------
// CPU pinning
// ---------------------------------------------------------------------------------------------

/** CPU ids this process may run on (cgroup/affinity aware), from /proc/self/status. */
export function allowedCpus (): number[] {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8')
    const match = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)
    if (match !== null) return parseCpuList(match[1])
  } catch {
    // not Linux
  }
  return Array.from({ length: os.availableParallelism() }, (_, i) => i)
}

/** "0-2,5" -> [0, 1, 2, 5] */
export function parseCpuList (list: string): number[] {
  const cpus: number[] = []
  for (const part of list.split(',')) {
    if (part === '') continue
    const [from, to] = part.split('-').map((s) => Number.parseInt(s, 10))
    if (!Number.isInteger(from)) throw new Error(`bad CPU list: ${list}`)
    for (let cpu = from; cpu <= (Number.isInteger(to) ? to : from); cpu++) cpus.push(cpu)
  }
  return cpus
}

export function formatCpuList (cpus: number[]): string {
  return cpus.join(',')
}

// ---------------------------------------------------------------------------------------------
// Tracked processes
// ---------------------------------------------------------------------------------------------

const TAIL_BYTES = 65536

export interface Managed {
  name: string
  child: ChildProcess
  pid: number
  /** CPUs it was pinned to, or null. */
  cpus: number[] | null
  /** The command line as run (after the taskset prefix). */
  argv: string[]
  /** Resolves with the exit code (or signal name) once the process is gone and its output is read. */
  exited: Promise<number | string>
  /** null while running */
  exitStatus: number | string | null
  /** The last TAIL_BYTES or more of its output, decoded when read. */
  readonly stdoutTail: string
  readonly stderrTail: string
}

/**
 * The end of a child's output, kept as the chunks read (nothing decoded or copied per chunk): a
 * balancer's access log arrives here at megabytes a second, and this process may share a core with
 * what it measures. Holds the newest chunks adding up to TAIL_BYTES or more.
 */
class Tail {
  private chunks: Buffer[] = []
  private bytes = 0

  push (chunk: Buffer): void {
    this.chunks.push(chunk)
    this.bytes += chunk.length
    while (this.bytes - this.chunks[0].length >= TAIL_BYTES) this.bytes -= (this.chunks.shift() as Buffer).length
  }

  /** The last TAIL_BYTES as text. */
  text (): string {
    return Buffer.concat(this.chunks).subarray(-TAIL_BYTES).toString('utf8')
  }
}

/** How long `exited` waits after 'exit' for the child's pipes to close. */
const PIPE_DRAIN_GRACE_MS = 2000

const running = new Set<Managed>()
const tempDirs = new Set<string>()

export interface SpawnOptions {
  name: string
  /** Pin with taskset to these CPUs; null = no pinning. */
  cpus: number[] | null
  cwd?: string
  /** Keep stdin as a pipe: our own node children exit when it closes (i.e. when we die). */
  stdinPipe?: boolean
}

export function spawnTracked (command: string, args: string[], options: SpawnOptions): Managed {
  let argv = [command, ...args]
  if (options.cpus !== null) argv = ['taskset', '-c', formatCpuList(options.cpus), ...argv]
  const child = spawn(argv[0], argv.slice(1), {
    cwd: options.cwd ?? ROOT,
    detached: true,
    stdio: [options.stdinPipe === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  })
  const stdout = new Tail()
  const stderr = new Tail()
  const managed: Managed = {
    name: options.name,
    child,
    pid: child.pid ?? -1,
    cpus: options.cpus,
    argv,
    exited: Promise.resolve(0),
    exitStatus: null,
    get stdoutTail () { return stdout.text() },
    get stderrTail () { return stderr.text() },
  }
  managed.exited = new Promise((resolve) => {
    child.once('error', (err) => {
      stderr.push(Buffer.from(`\nspawn failed: ${err.message}`))
      managed.exitStatus = 'spawn-error'
      running.delete(managed)
      resolve('spawn-error')
    })
    child.once('exit', (code, signal) => {
      managed.exitStatus = code ?? signal ?? 'unknown'
      running.delete(managed)
      // 'exit' can come before the last stdout chunk is read (wrk's whole report arrives at its
      // end): resolve on 'close', when the pipes are drained, or after a grace period should a
      // process the child left behind still hold them open.
      const status = managed.exitStatus
      const grace = setTimeout(() => resolve(status), PIPE_DRAIN_GRACE_MS)
      child.once('close', () => {
        clearTimeout(grace)
        resolve(status)
      })
    })
  })
  // Always drain both pipes: a child blocked on a full pipe would skew the measurement.
  child.stdout?.on('data', (chunk: Buffer) => { stdout.push(chunk) })
  child.stderr?.on('data', (chunk: Buffer) => { stderr.push(chunk) })
  child.stdin?.on('error', () => {
    // EPIPE after the child exited
  })
  if (managed.pid > 0) running.add(managed)
  return managed
}

function signalGroup (pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

/** SIGTERM the process group, SIGKILL it after `graceMs`. Resolves with the exit status. */
export async function stopProcess (managed: Managed, graceMs = 3000): Promise<number | string> {
  if (managed.exitStatus !== null) return managed.exitStatus
  signalGroup(managed.pid, 'SIGTERM')
  let timer: NodeJS.Timeout | null = null
  const killed = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs)
  })
  const first = await Promise.race([managed.exited, killed])
  if (timer !== null) clearTimeout(timer)
  if (first === 'timeout') {
    signalGroup(managed.pid, 'SIGKILL')
    await managed.exited
    return 'SIGKILL (did not exit on SIGTERM)'
  }
  // The leader is gone; make sure nothing it left in its group lingers.
  signalGroup(managed.pid, 'SIGKILL')
  return first
}

export async function stopAll (): Promise<void> {
  await Promise.all([...running].map((m) => stopProcess(m, 2000)))
  removeTempDirs()
}

/** Last resort for the 'exit' event, where nothing asynchronous runs. */
export function killAllSync (): void {
  for (const managed of running) signalGroup(managed.pid, 'SIGKILL')
  running.clear()
  removeTempDirs()
}

export function makeTempDir (prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

function removeTempDirs (): void {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/** A port the kernel just handed out on 127.0.0.1 (released again; small race, fine for a bench). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })
}

function tryConnect (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Poll-connect until `port` accepts, the process exits, or `timeoutMs` passes. */
export async function waitForPort (managed: Managed, port: number, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (managed.exitStatus !== null) {
      throw new Error(`${managed.name} exited (${managed.exitStatus}) before listening on ${port}\n` +
        `  command: ${managed.argv.join(' ')}\n${indentTail(managed)}`)
    }
    if (await tryConnect(port)) return
    if (Date.now() > deadline) {
      throw new Error(`${managed.name} did not listen on ${port} within ${timeoutMs} ms\n` +
        `  command: ${managed.argv.join(' ')}\n${indentTail(managed)}`)
    }
    await sleep(50)
  }
}

export function indentTail (managed: Managed): string {
  const lines = `${managed.stderrTail}\n${managed.stdoutTail}`.trim().split('\n').slice(-15)
  return lines.filter((l) => l !== '').map((l) => `  | ${l}`).join('\n')
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// ---------------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------------

export interface Upstreams {
  kind: 'node' | 'nginx'
  ports: number[]
  processes: Managed[]
}

/** One bench/upstream.ts process per port. */
export async function startNodeUpstreams (count: number, cpus: number[] | null): Promise<Upstreams> {
  const ports: number[] = []
  const processes: Managed[] = []
  for (let i = 0; i < count; i++) {
    const port = await freePort()
    const managed = spawnTracked(process.execPath, [path.join(ROOT, 'dist/bench/upstream.js'), '--port', String(port)],
      { name: `upstream ${i + 1}`, cpus, stdinPipe: true })
    ports.push(port)
    processes.push(managed)
  }
  await Promise.all(processes.map((m, i) => waitForPort(m, ports[i])))
  return { kind: 'node', ports, processes }
}

/** nginx `return 200` servers, one nginx (one worker) listening on every port. */
export async function startNginxUpstreams (nginx: string, count: number, cpus: number[] | null): Promise<Upstreams> {
  const ports: number[] = []
  for (let i = 0; i < count; i++) ports.push(await freePort())
  const servers = ports.map((port) => `
    server {
      listen 127.0.0.1:${port} reuseport;
      keepalive_requests 1000000;
      location / { return 200 "ok"; }
    }`).join('\n')
  const dir = makeTempDir('switchyard-upstreams-')
  fs.writeFileSync(path.join(dir, 'nginx.conf'), nginxHead(dir, 1) + `
http {
  access_log off;
  default_type text/plain;
${servers}
}
`)
  const managed = spawnTracked(nginx, nginxArgs(dir), { name: 'nginx upstreams', cpus })
  await Promise.all(ports.map((port) => waitForPort(managed, port)))
  return { kind: 'nginx', ports, processes: [managed] }
}

/** Where a one-balancer bench runs (--soak, --paired): the first half of the allowed CPUs for the balancer, the rest for load and upstreams. */
export interface HalfPinning {
  /** taskset is there and there are at least 2 CPUs; else nothing is pinned (both null). */
  pinned: boolean
  balancerCpus: number[] | null
  loadCpus: number[] | null
}

export function halfPinning (): HalfPinning {
  const cpus = allowedCpus()
  const half = Math.max(1, Math.floor(cpus.length / 2))
  const pinned = cpus.length >= 2 && which('taskset') !== null
  return { pinned, balancerCpus: pinned ? cpus.slice(0, half) : null, loadCpus: pinned ? cpus.slice(half) : null }
}

/** Two upstreams on the load CPUs: nginx `return 200` when installed, else bench/upstream.ts. */
export async function startBenchUpstreams (loadCpus: number[] | null): Promise<Upstreams> {
  const nginx = which('nginx')
  return nginx !== null ? await startNginxUpstreams(nginx, 2, loadCpus) : await startNodeUpstreams(2, loadCpus)
}

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

export interface PeerDefinition {
  id: 'nginx' | 'haproxy' | 'node-proxy' | 'http-proxy' | 'node-relay'
  /** Path of the binary, or null when missing. */
  binary: string | null
  version: string
  /** How to get it when missing. */
  installHint: string
  start(port: number, upstreamPorts: number[], threads: number, cpus: number[] | null): Promise<Managed>
}

export const INSTALL_HINT = 'apt-get install -y nginx haproxy'

/** The installed http-proxy's version (a devDependency), or null when `npm install` has not put it there. */
export function httpProxyVersion (): string | null {
  try {
    const manifest = JSON.parse(fs.readFileSync(require.resolve('http-proxy/package.json'), 'utf8')) as { version?: unknown }
    return typeof manifest.version === 'string' ? manifest.version : null
  } catch {
    return null
  }
}

export function peerDefinitions (): PeerDefinition[] {
  const nginx = which('nginx')
  const haproxy = which('haproxy')
  const httpProxy = httpProxyVersion()
  return [
    {
      id: 'nginx',
      binary: nginx,
      version: nginx !== null ? versionOf(nginx, ['-v']).replace(/^nginx version:\s*(nginx\/)?/, '') : '',
      installHint: INSTALL_HINT,
      start: (port, upstreamPorts, threads, cpus) => startNginxPeer(nginx as string, port, upstreamPorts, threads, cpus),
    },
    {
      id: 'haproxy',
      binary: haproxy,
      version: haproxy !== null ? versionOf(haproxy, ['-v']).replace(/^HA-?Proxy version\s*/i, '').split(/[ -]/)[0] : '',
      installHint: INSTALL_HINT,
      start: (port, upstreamPorts, threads, cpus) =>
        startHaproxyPeer(haproxy as string, port, upstreamPorts, threads, cpus),
    },
    {
      id: 'node-proxy',
      binary: process.execPath,
      version: `node ${process.version}`,
      installHint: '',
      start: (port, upstreamPorts, _threads, cpus) => startNodeProxyPeer(port, upstreamPorts, cpus),
    },
    {
      // the npm package http-proxy (bench/http-proxy-peer.ts): #18 states a goal against it
      id: 'http-proxy',
      binary: httpProxy !== null ? process.execPath : null,
      version: httpProxy ?? '',
      installHint: 'npm install (http-proxy is a devDependency)',
      start: (port, upstreamPorts, _threads, cpus) => startNodeScriptPeer('http-proxy-peer', port, upstreamPorts, cpus),
    },
    {
      // the floor: Node's own socket I/O with no HTTP at all (bench/relay.ts)
      id: 'node-relay',
      binary: process.execPath,
      version: `node ${process.version}`,
      installHint: '',
      start: (port, upstreamPorts, _threads, cpus) => startNodeScriptPeer('relay', port, upstreamPorts, cpus),
    },
  ]
}

/** -e: the start-up error log goes to our dir too, never /var/log/nginx. */
function nginxArgs (dir: string): string[] {
  return ['-p', `${dir}/`, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf')]
}

/** Main context shared by the nginx peer and the nginx upstreams: foreground, files in `dir`. */
function nginxHead (dir: string, workerProcesses: number): string {
  // As root, nginx workers default to `nobody`, which cannot enter our 0700 temp dir.
  const user = process.getuid?.() === 0 ? 'user root root;\n' : ''
  return `${user}daemon off;
master_process on;
worker_processes ${workerProcesses};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 16384; multi_accept on; }
`
}

/**
 * nginx as a proxy peer. `accessLog`: nginx's own access log, as a production
 * nginx keeps it, as the yardstick for switchyard's (`--access-log`): the
 * combined format, written in 64 KiB batches (`buffer=`) as switchyard
 * batches its own (unbuffered, nginx makes one write per request), to a FIFO
 * that this process reads and discards, as it reads switchyard's stdout.
 * (Not nginx's stdout: a child's stdout here is a socket, which
 * `access_log /dev/stdout` cannot open.)
 */
export async function startNginxPeer (nginx: string, port: number, upstreamPorts: number[], workers: number,
  cpus: number[] | null, accessLog = false): Promise<Managed> {
  const dir = makeTempDir('switchyard-nginx-')
  const servers = upstreamPorts.map((p) => `    server 127.0.0.1:${p};`).join('\n')
  fs.writeFileSync(path.join(dir, 'nginx.conf'), nginxHead(dir, workers) + `
http {
  access_log ${accessLog ? `${logFifo(dir)} combined buffer=64k flush=1s` : 'off'};
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream backends {
${servers}
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
`)
  const reader = accessLog ? readFifo(logFifo(dir)) : null // open before nginx opens it to write
  const managed = spawnTracked(nginx, nginxArgs(dir), { name: 'nginx', cpus })
  if (reader !== null) void managed.exited.then(() => reader.destroy())
  await waitForPort(managed, port)
  return managed
}

function logFifo (dir: string): string {
  return path.join(dir, 'access.fifo')
}

/** Makes a FIFO at `file` and reads it to nowhere (a non-blocking pipe stream: no thread-pool read). */
function readFifo (file: string): net.Socket {
  execFileSync('mkfifo', ['-m', '600', file])
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  const stream = new net.Socket({ fd, readable: true, writable: false })
  stream.on('error', () => {})
  stream.resume()
  return stream
}

async function startHaproxyPeer (haproxy: string, port: number, upstreamPorts: number[], threads: number,
  cpus: number[] | null): Promise<Managed> {
  const dir = makeTempDir('switchyard-haproxy-')
  const servers = upstreamPorts.map((p, i) => `  server s${i + 1} 127.0.0.1:${p}`).join('\n')
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), `global
  nbthread ${threads}
  # maxconn sets the FD limit haproxy asks for; 20000 is over a common hard limit
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always

frontend bench
  bind 127.0.0.1:${port}
  default_backend upstreams

backend upstreams
  balance roundrobin
${servers}
`)
  // -db: foreground, no daemon
  const managed = spawnTracked(haproxy, ['-db', '-f', path.join(dir, 'haproxy.cfg')], { name: 'haproxy', cpus })
  await waitForPort(managed, port)
  return managed
}

async function startNodeProxyPeer (port: number, upstreamPorts: number[], cpus: number[] | null): Promise<Managed> {
  return await startNodeScriptPeer('node-proxy', port, upstreamPorts, cpus)
}

/** dist/bench/NAME.js with switchyard-style --bind/--upstream flags. */
async function startNodeScriptPeer (name: string, port: number, upstreamPorts: number[], cpus: number[] | null): Promise<Managed> {
  const args = [path.join(ROOT, `dist/bench/${name}.js`), '--bind', `127.0.0.1:${port}`]
  for (const p of upstreamPorts) args.push('--upstream', `127.0.0.1:${p}`)
  const managed = spawnTracked(process.execPath, args, { name, cpus, stdinPipe: true })
  await waitForPort(managed, port)
  return managed
}
