/**
 * Black-box acceptance: the real CLI (`switchyard` in a child process) started
 * with balancebeam-compatible flags (--bind, --upstream, --workers) in front of
 * Node echo upstreams. What a user of balancebeam would check: requests are
 * relayed with X-Forwarded-For, keep-alive connections work, round-robin
 * spreads evenly (globally, across workers), smuggling is refused, and the
 * process behaves: --help, exit codes for bad flags and bad config files,
 * SIGTERM.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as net from 'node:net'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MODES, spawnLb, CLI, type SpawnedLb } from './harness'
import { waitFor, startEchoUpstream, freePort, rawExchange, httpRequest, type EchoReply } from '../helpers'

/** Start the CLI; the test's after hook stops it (SIGTERM, then SIGKILL if it hangs). */
async function startCli (t: { after: (fn: () => Promise<void>) => void }, args: string[]): Promise<SpawnedLb> {
  const lb = await spawnLb(args)
  t.after(async () => {
    const timer = setTimeout(() => { if (lb.child.exitCode === null) lb.child.kill('SIGKILL') }, 10_000)
    await lb.stop()
    clearTimeout(timer)
  })
  return lb
}

/** Run the CLI to completion (for flags that make it exit). Killed by PID after `timeoutMs`. */
async function runCli (args: string[], timeoutMs = 30_000): Promise<{ code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
  clearTimeout(timer)
  return { code, signal, stdout, stderr }
}

/** One keep-alive client connection doing requests one after another (Content-Length or chunked answers). */
async function keepAliveConnection (port: number, paths: string[]): Promise<{ echoes: EchoReply[], localPorts: Set<number> }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const localPorts = new Set<number>()
  const echoes: EchoReply[] = []
  try {
    for (const path of paths) {
      const echo = await new Promise<EchoReply>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
          localPorts.add(res.socket.localPort ?? -1)
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => { body += c })
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`status ${String(res.statusCode)}: ${body}`))
            else resolve(JSON.parse(body) as EchoReply)
          })
        })
        req.on('error', reject)
      })
      echoes.push(echo)
    }
  } finally {
    agent.destroy()
  }
  return { echoes, localPorts }
}

for (const mode of MODES) {
  const workers = String(mode.workers)

  describe(`acceptance: the CLI (${mode.name})`, () => {
    test('relays the request line, headers and body, adding X-Forwarded-For: 127.0.0.1', async (t) => {
      const up = await startEchoUpstream('only')
      t.after(async () => await up.close())
      const lb = await startCli(t, ['--bind', '127.0.0.1:0', '--upstream', up.address, '--workers', workers])

      const body = 'a body for the upstream\n'
      const res = await httpRequest(lb.port, {
        method: 'POST',
        path: '/submit/form?x=1&y=two',
        headers: { 'content-type': 'text/plain', 'content-length': String(body.length), 'x-custom-header': 'Custom Value' },
        body,
      })
      assert.equal(res.status, 200)
      const echo = JSON.parse(res.body) as EchoReply
      assert.equal(echo.name, 'only')
      assert.equal(echo.method, 'POST')
      assert.equal(echo.url, '/submit/form?x=1&y=two')
      assert.equal(echo.headers['x-custom-header'], 'Custom Value')
      assert.equal(echo.headers['content-type'], 'text/plain')
      assert.equal(echo.headers.host, `127.0.0.1:${lb.port}`)
      assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1')
      assert.equal(echo.body, body)
      assert.equal(up.count, 1)
    })

    test('3 concurrent keep-alive connections x 4 requests reach the upstream as 12 requests', async (t) => {
      const up = await startEchoUpstream('ka')
      t.after(async () => await up.close())
      const lb = await startCli(t, ['--bind', '127.0.0.1:0', '--upstream', up.address, '--workers', workers, '--no-access-log'])

      const results = await Promise.all([0, 1, 2].map(async (c) =>
        await keepAliveConnection(lb.port, [0, 1, 2, 3].map((r) => `/conn/${c}/req/${r}`))))
      for (const [c, { echoes, localPorts }] of results.entries()) {
        assert.equal(localPorts.size, 1, `connection ${c} stayed one connection`)
        assert.deepEqual(echoes.map((e) => e.url), [0, 1, 2, 3].map((r) => `/conn/${c}/req/${r}`))
      }
      assert.equal(up.count, 12)
    })

    test('round-robin spreads 90 requests over 3 upstreams evenly (global rotation: exactly 30 each)', async (t) => {
      const ups = await Promise.all(['a', 'b', 'c'].map(async (name) => await startEchoUpstream(name)))
      t.after(async () => { for (const up of ups) await up.close() })
      const lb = await startCli(t, ['--bind', '127.0.0.1:0', ...ups.flatMap((up) => ['--upstream', up.address]), '--workers', workers, '--no-access-log'])

      // 6 keep-alive connections x 15 requests: connections land on different workers in worker mode
      const results = await Promise.all([0, 1, 2, 3, 4, 5].map(async (c) =>
        await keepAliveConnection(lb.port, Array.from({ length: 15 }, (_, r) => `/rr/${c}/${r}`))))
      const byName: Record<string, number> = { a: 0, b: 0, c: 0 }
      for (const { echoes } of results) for (const e of echoes) byName[e.name]++
      const mean = 90 / 3
      for (const up of ups) {
        assert.ok(Math.abs(up.count - mean) <= 0.4 * mean, `upstream ${up.address}: ${up.count} requests, mean ${mean}`)
      }
      assert.deepEqual(byName, { a: 30, b: 30, c: 30 })
      assert.deepEqual(ups.map((up) => up.count), [30, 30, 30])
    })

    test('request smuggling attempts get 400 (501 for an unknown transfer coding) and reach no upstream', async (t) => {
      const up = await startEchoUpstream('guarded')
      t.after(async () => await up.close())
      let upstreamConnections = 0
      up.server.on('connection', () => { upstreamConnections++ })
      const lb = await startCli(t, ['--bind', '127.0.0.1:0', '--upstream', up.address, '--workers', workers])

      const H = 'Host: example.test\r\n'
      const attempts = [
        `POST / HTTP/1.1\r\n${H}Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED`,
        `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`,
        `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n${H}\r\n`,
        `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked, identity\r\n\r\n5c\r\n`,
        `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding:\tchunked\r\n\r\n5c\r\n`,
        `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding\t: chunked\r\n\r\n5c\r\n`,
        `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nContent-Length: 5\r\n\r\nhello!`,
      ]
      for (const attempt of attempts) {
        const result = await rawExchange(lb.port, attempt, { timeoutMs: 3000 })
        assert.match(result.text, attempt.includes('xchunked') ? /^HTTP\/1\.1 501 / : /^HTTP\/1\.1 400 /, `for ${JSON.stringify(attempt)}: ${JSON.stringify(result.text.slice(0, 100))}`)
        assert.equal(result.timedOut, false, 'the proxy closed the connection')
      }
      assert.equal(up.count, 0)
      assert.equal(upstreamConnections, 0)
      // the upstream was reachable all along
      const ok = await httpRequest(lb.port, { path: '/fine' })
      assert.equal(ok.status, 200)
      assert.equal(up.count, 1)
    })

    test('--help exits 0 and lists the flags', async () => {
      const result = await runCli(['--workers', workers, '--help'])
      assert.equal(result.code, 0, result.stderr)
      for (const flag of ['--bind', '--upstream', '--workers', '--config', '--active-health-check-interval', '--active-health-check-path',
        '--max-requests-per-minute', '--log-level', '--no-access-log', '--help', '--version']) {
        assert.ok(result.stdout.includes(flag), `--help mentions ${flag}`)
      }
    })

    test('a bad flag exits 2 and names it', async () => {
      const unknown = await runCli(['--bind', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--workers', workers, '--no-such-flag'])
      assert.equal(unknown.code, 2)
      assert.match(unknown.stderr, /--no-such-flag/)
      assert.ok(!unknown.stdout.includes('"msg":"listening"'))
      const badValue = await runCli(['--bind', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--workers', 'many'])
      assert.equal(badValue.code, 2)
      assert.match(badValue.stderr, /--workers/)
    })

    test('an invalid config file exits 1, lists every error with its JSON path, and binds nothing', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'switchyard-acceptance-'))
      t.after(() => rmSync(dir, { recursive: true, force: true }))
      const port = await freePort()
      const file = join(dir, 'lb.json')
      writeFileSync(file, JSON.stringify({
        listen: `127.0.0.1:${port}`,
        workers: mode.workers,
        upstreams: [{ address: 'not-a-host-port' }],
        timeouts: { connectMs: -5 },
        bogusKey: true,
      }))
      const result = await runCli(['--config', file])
      assert.equal(result.code, 1, `stdout: ${result.stdout}\nstderr: ${result.stderr}`)
      assert.match(result.stderr, /\/upstreams\/0\/address/)
      assert.match(result.stderr, /\/timeouts\/connectMs/)
      assert.match(result.stderr, /bogusKey/)
      assert.ok(!result.stdout.includes('"msg":"listening"'))
      // nothing was bound: the port is still free
      const probe = net.createServer()
      await new Promise<void>((resolve, reject) => { probe.once('error', reject); probe.listen(port, '127.0.0.1', resolve) })
      await new Promise<void>((resolve) => probe.close(() => resolve()))
    })

    test('SIGTERM exits 0', async (t) => {
      const up = await startEchoUpstream('term')
      t.after(async () => await up.close())
      const lb = await spawnLb(['--bind', '127.0.0.1:0', '--upstream', up.address, '--workers', workers])
      const killer = setTimeout(() => { if (lb.child.exitCode === null) lb.child.kill('SIGKILL') }, 10_000)
      t.after(() => { clearTimeout(killer); if (lb.child.exitCode === null) lb.child.kill('SIGKILL') })
      const res = await httpRequest(lb.port, { path: '/before-term' })
      assert.equal(res.status, 200)
      const code = await lb.stop()
      assert.equal(code, 0, lb.output())
      await waitFor(async () => await new Promise<boolean>((resolve) => {
        const probe = net.connect(lb.port, '127.0.0.1')
        probe.once('connect', () => { probe.destroy(); resolve(false) })
        probe.once('error', () => resolve(true))
      }), 2000, 'the listening port to be closed')
    })
  })
}
