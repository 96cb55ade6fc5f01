/**
 * The Node peers of `npm run bench -- --peers` proxy correctly, so their rows measure a working proxy:
 * each is started the way the bench starts it (peerDefinitions().start: dist/bench/*.js with
 * switchyard-style --bind/--upstream flags, readiness by connecting) in front of two echo upstreams.
 * What is checked: method, path and body arrive, answers alternate between the upstreams
 * (round-robin), upstream connections are kept alive across requests, X-Forwarded-For is added
 * (http-proxy is run with `xfwd: true`, as switchyard adds it), an unreachable upstream is a 502.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import { freePort as benchFreePort, peerDefinitions, spawnTracked, stopProcess, type Managed, type PeerDefinition } from '../../bench/peers'
import { refusedPort, startEchoUpstream, type TestServer, type EchoReply } from '../helpers'

/** Requests one after another on one kept-alive client connection; the echoes in order. */
async function sequentialRequests (port: number, count: number): Promise<EchoReply[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const echoes: EchoReply[] = []
  try {
    for (let i = 0; i < count; i++) {
      const body = `body ${i}`
      const echo = await new Promise<EchoReply>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, agent, method: 'POST', path: `/r/${i}?q=${i}`, headers: { 'content-length': Buffer.byteLength(body) } }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`))
            else resolve(JSON.parse(Buffer.concat(chunks).toString()) as EchoReply)
          })
          res.on('error', reject)
        })
        req.on('error', reject)
        req.end(body)
      })
      echoes.push(echo)
    }
  } finally {
    agent.destroy()
  }
  return echoes
}

async function statusOf (port: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, agent: false, path: '/' }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
  })
}

function peer (id: PeerDefinition['id']): PeerDefinition {
  const definition = peerDefinitions().find((p) => p.id === id)
  assert.ok(definition !== undefined, `peerDefinitions() lists ${id}`)
  return definition
}

describe('bench peers', () => {
  const upstreams: Array<TestServer & { server: http.Server }> = []
  /** upstream TCP connections accepted, over both upstreams */
  let upstreamConnections = 0

  before(async () => {
    for (const name of ['a', 'b']) {
      const upstream = await startEchoUpstream(name)
      upstream.server.on('connection', () => { upstreamConnections++ })
      upstreams.push(upstream)
    }
  })
  after(async () => {
    for (const upstream of upstreams) await upstream.close()
  })

  test('the http-proxy peer is listed with the installed package\'s version', () => {
    const definition = peer('http-proxy')
    assert.notEqual(definition.binary, null, 'http-proxy is a devDependency: npm install puts it there')
    assert.match(definition.version, /^1\.\d+\.\d+$/)
  })

  for (const id of ['http-proxy', 'node-proxy'] as const) {
    describe(id, () => {
      let port = 0
      let running: Managed | null = null

      before(async () => {
        port = await benchFreePort()
        running = await peer(id).start(port, upstreams.map((u) => u.port), 1, null)
      })
      after(async () => {
        if (running !== null) assert.equal(await stopProcess(running), 0, `${id} exits 0 on SIGTERM`)
      })

      test('relays method, path and body, round-robin over the upstreams, on kept-alive upstream connections', async () => {
        const connectionsBefore = upstreamConnections
        const echoes = await sequentialRequests(port, 8)
        echoes.forEach((echo, i) => {
          assert.equal(echo.method, 'POST')
          assert.equal(echo.url, `/r/${i}?q=${i}`)
          assert.equal(echo.body, `body ${i}`)
          assert.equal(echo.headers.host, `127.0.0.1:${port}`, 'Host is the client\'s')
        })
        const names = echoes.map((e) => e.name)
        assert.ok(names.every((name, i) => i === 0 || name !== names[i - 1]), `alternates: ${names.join(' ')}`)
        assert.deepEqual(new Set(names), new Set(['a', 'b']))
        // one request at a time: one connection per upstream, reused (http-proxy without an agent would open 8)
        assert.ok(upstreamConnections - connectionsBefore <= 2, `${upstreamConnections - connectionsBefore} upstream connections for 8 requests`)
      })

      if (id === 'http-proxy') {
        test('adds X-Forwarded-For/-Proto/-Port (xfwd)', async () => {
          const [echo] = await sequentialRequests(port, 1)
          assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1')
          assert.equal(echo.headers['x-forwarded-proto'], 'http')
          assert.equal(echo.headers['x-forwarded-port'], String(port))
        })
      }
    })

    test(`${id}: an unreachable upstream is a 502, and the peer keeps serving`, async () => {
      const port = await benchFreePort()
      const running = await peer(id).start(port, [await refusedPort()], 1, null)
      try {
        assert.equal(await statusOf(port), 502)
        assert.equal(await statusOf(port), 502)
      } finally {
        assert.equal(await stopProcess(running), 0)
      }
    })
  }
})

test('spawnTracked: `exited` resolves once the output is read, not at the exit before it (wrk prints its report as it ends)', async () => {
  // The child exits at once; a process it leaves behind on the same stdout writes the report 300 ms
  // later, so 'exit' certainly comes before the report is read (under load that happens with wrk
  // alone: its report and its exit arrive together and 'exit' may be handled first).
  const late = "setTimeout(() => process.stdout.write('x'.repeat(100 * 1024) + '\\nreport: END\\n'), 300)"
  const script = `require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(late)}], { stdio: ['ignore', 'inherit', 'ignore'] }).unref()`
  for (let i = 0; i < 3; i++) {
    const managed = spawnTracked(process.execPath, ['-e', script], { name: 'writer', cpus: null })
    assert.equal(await managed.exited, 0)
    assert.ok(managed.stdoutTail.endsWith('\nreport: END\n'), `run ${i}: the tail ends with the report: …${JSON.stringify(managed.stdoutTail.slice(-40))}`)
  }
})

test('spawnTracked: the tails keep the last 64 KiB of each stream, whole, across many chunks', async () => {
  // 300 chunks of 1 KiB (each line numbered), then a last line; stderr gets a short line
  const write = "let i = 0; const t = setInterval(() => { process.stdout.write(String(i).padStart(6, '0') + ' ' + 'y'.repeat(1016) + '\\n'); " +
    "if (++i === 300) { clearInterval(t); process.stdout.write('last\\n'); process.stderr.write('err line\\n') } }, 0)"
  const managed = spawnTracked(process.execPath, ['-e', write], { name: 'chunks', cpus: null })
  assert.equal(await managed.exited, 0)
  const tail = managed.stdoutTail
  assert.equal(tail.length, 64 * 1024)
  assert.ok(tail.endsWith('\n000299 ' + 'y'.repeat(1016) + '\nlast\n'))
  // every whole line in the tail is intact and in order
  const lines = tail.split('\n').slice(1, -2)
  for (let k = 1; k < lines.length; k++) assert.equal(Number(lines[k].slice(0, 6)), Number(lines[k - 1].slice(0, 6)) + 1)
  assert.equal(managed.stderrTail, 'err line\n')
})
