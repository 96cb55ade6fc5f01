/**
 * Property tests (fast-check, fixed seeds): random valid requests and
 * responses parse to what they were built from, and to exactly the same
 * result whole, byte by byte and cut at random points. A third property
 * mutates valid requests and requires the same answer, whatever it is, from
 * every way of cutting them: the parser's verdict must never depend on how
 * TCP happened to segment the bytes.
 *
 * On failure fast-check prints the seed and the counterexample path; rerun
 * with that seed to reproduce.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { HeadParser } from '../../src/http/head-parser'
import { ChunkedScanner } from '../../src/http/chunked'
import {
  requestArb, responseArb, partitionsArb, mutationsArb, mutate, feedMessage, cutsFrom, byteCuts, wholeCuts,
  deepEqual, show, DEFAULT_LIMITS, DEFAULT_TRAILER_BYTES, KIND_REQUEST, KIND_RESPONSE, BODY_NONE, BODY_CLOSE,
  type MessageSnapshot, type Cuts, type FeedOptions,
} from './parser-cases'

const RUNS = 500
const SEED_REQUESTS = 20_240_611
const SEED_RESPONSES = 20_240_612
const SEED_MUTATED = 20_240_613

/** Whole, byte by byte, then each random partition: all must equal the whole result. */
function sameEveryWay (kind: number, msg: Buffer, partitions: number[][], opts: FeedOptions): MessageSnapshot {
  const whole = feedMessage(kind, msg, wholeCuts(), opts)
  const ways: Array<[string, Cuts]> = [['byte by byte', byteCuts(msg.length)], ...partitions.map((f): [string, Cuts] => {
    const cuts = cutsFrom(f, msg.length)
    return [`cuts ${JSON.stringify(cuts)}`, cuts]
  })]
  for (const [name, cuts] of ways) {
    const got = feedMessage(kind, msg, cuts, opts)
    if (!deepEqual(got, whole)) {
      assert.fail(`${name} differs from whole for ${show(msg)}\n whole: ${JSON.stringify(whole)}\n got:   ${JSON.stringify(got)}`)
    }
  }
  return whole
}

describe('parser properties', () => {
  it(`random valid requests parse to their model, however they are cut (${RUNS} runs)`, () => {
    // one parser and one scanner for every run: reset() must really reset
    const opts: FeedOptions = { parser: new HeadParser(KIND_REQUEST, DEFAULT_LIMITS), chunked: new ChunkedScanner(DEFAULT_TRAILER_BYTES) }
    fc.assert(fc.property(requestArb({ llhttp: false }), partitionsArb, (m, partitions) => {
      const msg = Buffer.from(m.text, 'latin1')
      const r = sameEveryWay(KIND_REQUEST, msg, partitions, opts)
      const h = r.head
      assert.equal(h.outcome, 'complete', `${h.error} ${h.errorDetail} for ${show(msg)}`)
      assert.equal(h.method, m.method)
      assert.equal(h.target, m.target)
      assert.equal(h.versionMinor, m.versionMinor)
      assert.deepEqual(h.headers, m.headers)
      assert.equal(h.end, m.headEnd)
      assert.equal(h.bodyKind, m.bodyKind)
      assert.equal(h.contentLength, m.contentLength)
      assert.equal(h.keepAlive, m.keepAlive)
      assert.equal(h.expectContinue, m.expectContinue)
      assert.equal(r.body, m.bodyKind === BODY_NONE ? 'none' : 'done')
      assert.equal(r.bodyEnd, m.end)
      assert.equal(r.dataBytes, m.dataBytes)
    }), { seed: SEED_REQUESTS, numRuns: RUNS })
  })

  it(`random valid responses parse to their model, however they are cut (${RUNS} runs)`, () => {
    const parser = new HeadParser(KIND_RESPONSE, DEFAULT_LIMITS)
    const chunked = new ChunkedScanner(DEFAULT_TRAILER_BYTES)
    fc.assert(fc.property(responseArb(), partitionsArb, (m, partitions) => {
      const msg = Buffer.from(m.text, 'latin1')
      const r = sameEveryWay(KIND_RESPONSE, msg, partitions, { parser, chunked, noBodyExpected: m.noBodyExpected })
      const h = r.head
      assert.equal(h.outcome, 'complete', `${h.error} ${h.errorDetail} for ${show(msg)}`)
      assert.equal(h.status, m.status)
      assert.equal(h.versionMinor, m.versionMinor)
      assert.deepEqual(h.headers, m.headers)
      assert.equal(h.end, m.headEnd)
      assert.equal(h.bodyKind, m.bodyKind)
      assert.equal(h.contentLength, m.contentLength)
      assert.equal(h.keepAlive, m.keepAlive)
      assert.equal(r.body, m.bodyKind === BODY_NONE ? 'none' : m.bodyKind === BODY_CLOSE ? 'close' : 'done')
      assert.equal(r.bodyEnd, m.end)
      assert.equal(r.dataBytes, m.dataBytes)
    }), { seed: SEED_RESPONSES, numRuns: RUNS })
  })

  it(`mutated requests get one verdict, however they are cut (${RUNS} runs)`, () => {
    const opts: FeedOptions = { parser: new HeadParser(KIND_REQUEST, DEFAULT_LIMITS), chunked: new ChunkedScanner(DEFAULT_TRAILER_BYTES) }
    fc.assert(fc.property(requestArb({ llhttp: false }), mutationsArb, partitionsArb, (m, mutations, partitions) => {
      const msg = Buffer.from(mutate(m.text, m.headEnd, mutations), 'latin1')
      sameEveryWay(KIND_REQUEST, msg, partitions, opts)
    }), { seed: SEED_MUTATED, numRuns: RUNS })
  })
})
