/**
 * The command as an operator runs it (a child process): `--check` validates
 * and binds nothing (exit 0 / 1), a missing ./lb.json without flags says so,
 * bad flag values exit 2 naming the flag, and an admin port already taken is
 * reported as the admin listener's; SIGHUP reloads the file and logs its warnings as at start. Each runs in
 * sequential and worker mode.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MODES, CLI, spawnLb } from './harness'
import { freePort, startEchoUpstream, waitFor, httpRequest } from '../helpers'

interface CliRun { code: number | null, stdout: string, stderr: string }

/** Run the CLI to completion in `cwd`; killed by PID after `timeoutMs`. */
async function runCli (args: string[], cwd: string, timeoutMs = 30_000): Promise<CliRun> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code] = await once(child, 'close') as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

async function portIsFree (port: number): Promise<boolean> {
  const probe = net.createServer()
  const free = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false))
    probe.listen(port, '127.0.0.1', () => resolve(true))
  })
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return free
}

for (const mode of MODES) {
  describe(`cli: checks and errors (${mode.name})`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'swy-cli-'))

    test('--check: a valid file prints "configuration OK", exits 0 and binds nothing', async () => {
      const port = await freePort()
      const admin = await freePort()
      const file = join(dir, `ok-${mode.workers}.json`)
      writeFileSync(file, JSON.stringify({ listen: `127.0.0.1:${port}`, workers: mode.workers, upstreams: [{ address: '127.0.0.1:9' }], admin: { listen: `127.0.0.1:${admin}` } }))
      const run = await runCli(['--check', '--config', file], dir)
      assert.equal(run.code, 0, run.stderr)
      assert.equal(run.stdout, 'configuration OK\n')
      assert.ok(await portIsFree(port), 'the proxy port was not bound')
      assert.ok(await portIsFree(admin), 'the admin port was not bound')
    })

    test('--check: an invalid file prints every error and exits 1', async () => {
      const file = join(dir, `bad-${mode.workers}.json`)
      writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', workers: mode.workers, upstreams: [{ address: 'nohost' }], rateLimit: { maxRequests: 1, tableSize: 100 }, extra: true }))
      const run = await runCli(['--check', '--config', file], dir)
      assert.equal(run.code, 1)
      assert.ok(!run.stdout.includes('configuration OK'))
      assert.match(run.stderr, new RegExp(`invalid configuration in ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
      for (const line of ['/upstreams/0/address: expected HOST:PORT', '/rateLimit/tableSize: must be a power of two', '/: unknown key "extra"']) {
        assert.ok(run.stderr.includes(line), `missing "${line}" in:\n${run.stderr}`)
      }
      const syntax = join(dir, `syntax-${mode.workers}.json`)
      writeFileSync(syntax, '{\n  "listen": "127.0.0.1:0",\n  "upstreams": [{ "address": "127.0.0.1:9" },]\n}\n')
      const broken = await runCli(['--check', '-c', syntax], dir)
      assert.equal(broken.code, 1)
      assert.match(broken.stderr, /syntax-\d\.json:3:46: not valid JSON: unexpected "\]", expected a value/)
    })

    test('--check: a default clamped by the cache size is a warning, still OK', async () => {
      const run = await runCli(['--check', '-u', '127.0.0.1:9', '--workers', String(mode.workers), '--bind', '127.0.0.1:0'], dir)
      assert.equal(run.code, 0, run.stderr)
      const file = join(dir, `cache-${mode.workers}.json`)
      writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', workers: mode.workers, upstreams: [{ address: '127.0.0.1:9' }], cache: { maxBytes: 65536 } }))
      const warned = await runCli(['--check', '--config', file], dir)
      assert.equal(warned.code, 0, warned.stderr)
      assert.match(warned.stdout, /^warning: \/cache\/maxEntryBytes: the default 1048576 is over half of \/cache\/maxBytes.*\nconfiguration OK\n$/)
    })

    test('no ./lb.json and no flags: says so plainly', async () => {
      const empty = mkdtempSync(join(tmpdir(), 'swy-cli-empty-'))
      try {
        const run = await runCli(['--workers', String(mode.workers)], empty)
        assert.equal(run.code, 1)
        assert.match(run.stderr, /no configuration: there is no \.\/lb\.json in .* and no --upstream flag/)
        assert.doesNotMatch(run.stderr, /upstreams'/)
        const check = await runCli(['--check'], empty)
        assert.equal(check.code, 1)
        assert.match(check.stderr, /no \.\/lb\.json/)
      } finally {
        rmSync(empty, { recursive: true, force: true })
      }
    })

    test('bad flag values exit 2 and name the flag', async () => {
      const upstream = await runCli(['--upstream', '127.0.0.1', '--workers', String(mode.workers)], dir)
      assert.equal(upstream.code, 2)
      assert.match(upstream.stderr, /--upstream "127\.0\.0\.1": expected HOST:PORT/)
      const level = await runCli(['--upstream', '127.0.0.1:9', '--log-level', 'loud', '--workers', String(mode.workers)], dir)
      assert.equal(level.code, 2)
      assert.match(level.stderr, /--log-level "loud": must be one of/)
    })

    test('an admin port already taken is reported as the admin listener\'s, exit 1', async () => {
      const taken = net.createServer()
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
      const adminPort = (taken.address() as net.AddressInfo).port
      try {
        const run = await runCli(['--bind', '127.0.0.1:0', '-u', '127.0.0.1:9', '--workers', String(mode.workers), '--admin', `127.0.0.1:${adminPort}`], dir)
        assert.equal(run.code, 1)
        assert.match(run.stderr, new RegExp(`cannot start: admin listener \\(admin\\.listen 127\\.0\\.0\\.1:${adminPort}\\): .*EADDRINUSE`))
      } finally {
        await new Promise<void>((resolve) => taken.close(() => resolve()))
      }
    })

    test('cleanup', () => { rmSync(dir, { recursive: true, force: true }) })
  })
}

for (const mode of MODES) {
  test(`cli: SIGHUP re-reads the file, applies it, and logs what it still warns about, as at start (${mode.name})`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'swy-hup-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    const upstream = await startEchoUpstream('hup')
    t.after(async () => await upstream.close())
    const file = join(dir, 'lb.json')
    // a cache too small for the default maxEntryBytes: a warning at start, and again on every reload of the file
    const config = { listen: '127.0.0.1:0', workers: mode.workers, upstreams: [{ address: upstream.address }], cache: { maxBytes: 65536 } }
    writeFileSync(file, JSON.stringify(config))
    const lb = await spawnLb(['--config', file])
    t.after(async () => { if (lb.child.exitCode === null) await lb.stop() })
    const warned = (): number => lb.output().split('\n').filter((l) => l.includes('"level":"warn"') && l.includes('/cache/maxEntryBytes: the default')).length
    await waitFor(() => warned() === 1, 5000, 'the warning at start')
    writeFileSync(file, JSON.stringify({ ...config, retries: 2 }))
    lb.child.kill('SIGHUP')
    await waitFor(() => lb.output().includes('"msg":"configuration reloaded"'), 5000, 'the reload')
    await waitFor(() => warned() === 2, 5000, 'the warning again on reload')
    assert.equal((await httpRequest(lb.port, { path: '/after-hup' })).status, 200)
    assert.equal(await lb.stop(), 0)
  })
}
