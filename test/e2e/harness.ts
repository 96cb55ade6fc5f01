/**
 * End-to-end harness: run switchyard in-process (programmatic API) or as the
 * real CLI in a child process, on loopback port 0, in sequential or worker
 * mode. Every instance is stopped by the test that started it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { existsSync, readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { start, type Switchyard } from '../../src/index'
import { W_OPEN_CONNECTIONS, MAX_WORKER_SLOTS } from '../../src/shared/layout'

/** The two modes every end-to-end suite runs in. */
export const MODES = [
  { name: 'sequential', workers: 0 },
  { name: 'workers=2', workers: 2 },
] as const

export interface RunningLb {
  lb: Switchyard
  port: number
  stop (): Promise<void>
}

/** Start in this process. `config` is lb.json-shaped; listen defaults to 127.0.0.1:0, logs to silent. */
export async function startLb (config: Record<string, unknown>, workers: number): Promise<RunningLb> {
  const lb = await start({
    listen: '127.0.0.1:0',
    log: { level: 'silent', access: false },
    ...config,
    workers,
  })
  return { lb, port: lb.address.port, stop: async () => await lb.stop(2000) }
}

/** Client connections the balancer holds open, over every thread (sequential mode has a worker slot too). */
export function openClientConnections (r: RunningLb): number {
  let n = 0
  for (let slot = 0; slot < MAX_WORKER_SLOTS; slot++) n += r.lb.state.worker(slot, W_OPEN_CONNECTIONS)
  return n
}

/**
 * Run the CLI on an lb.json written from `config` (listen defaults to 127.0.0.1:0) in a temporary folder;
 * stopped (SIGKILL after 10 s if it hangs) and the folder removed when the test ends.
 */
export async function spawnWithConfig (t: { after: (fn: () => Promise<void>) => void }, config: Record<string, unknown>): Promise<SpawnedLb> {
  const dir = mkdtempSync(join(tmpdir(), 'swy-cli-'))
  const file = join(dir, 'lb.json')
  writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', ...config }))
  const lb = await spawnLb(['--config', file], 30_000)
  t.after(async () => {
    const timer = setTimeout(() => { if (lb.child.exitCode === null) lb.child.kill('SIGKILL') }, 10_000)
    await lb.stop()
    clearTimeout(timer)
    rmSync(dir, { recursive: true, force: true })
  })
  return lb
}

/** The access-log lines for `path` in `file` (log.accessFile) written so far, parsed; none while there is no file. */
export function accessFileLines (file: string, path: string): Array<Record<string, unknown>> {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.path === path)
}

export interface SpawnedLb {
  child: ChildProcess
  port: number
  /** stdout+stderr so far */
  output (): string
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop (): Promise<number | null>
}

export const CLI = join(__dirname, '..', '..', 'src', 'cli.js')

/** Run the CLI; resolves once it logs "listening" (port parsed from the log line). */
export async function spawnLb (args: string[], timeoutMs = 30_000): Promise<SpawnedLb> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`switchyard did not start:\n${out}`)) }, timeoutMs)
    const check = (): void => {
      const m = /"address":"[^"]*:(\d+)"[^\n]*"msg":"listening"/.exec(out)
      if (m !== null) { clearTimeout(timer); child.stdout?.off('data', check); resolve(Number(m[1])) }
    }
    child.stdout?.on('data', check)
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`switchyard exited with ${code}:\n${out}`)) })
  })
  return {
    child,
    port,
    output: () => out,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM')
      return await exited
    },
  }
}
