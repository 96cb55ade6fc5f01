/**
 * The response-head phase as a table: status and framing of the upstream's
 * head against the request it answers (RFC 9110 §15.2 interim responses,
 * RFC 9112 §6.1 no chunked to HTTP/1.0, §9.3 persistence).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { planResponse, ResponsePlan, type RequestFacts } from '../../src/proxy/response-head'
import type { BodyKind } from '../../src/http/head-parser'

const req11: RequestFacts = { http10: false, isHead: false, upgrading: false, keepAlive: true, bodyDone: true }
const req10: RequestFacts = { ...req11, http10: true }

type Row = [string, RequestFacts, number, BodyKind, boolean /* TE */, boolean /* draining */, boolean /* upgrade allowed */, Partial<ResponsePlan>]

const rows: Row[] = [
  ['100 to HTTP/1.1 is relayed', req11, 100, 'none', false, false, false, { kind: 'interim' }],
  ['103 to HTTP/1.0 is dropped', req10, 103, 'none', false, false, false, { kind: 'interimDropped' }],
  ['101 we asked for, allowed', { ...req11, upgrading: true }, 101, 'none', false, false, true, { kind: 'tunnel' }],
  ['101 we did not ask for', req11, 101, 'none', false, false, true, { kind: 'unexpectedUpgrade' }],
  ['101 to another protocol', { ...req11, upgrading: true }, 101, 'none', false, false, false, { kind: 'unexpectedUpgrade' }],
  ['200 with Content-Length keeps the connection', req11, 200, 'length', false, false, false, { kind: 'final', relay: 'raw', close: false, connection: 'none', codings: 'drop' }],
  ['200 chunked to HTTP/1.1 is re-chunked', req11, 200, 'chunked', true, false, false, { relay: 'rechunk', close: false, codings: 'chunked' }],
  ['200 chunked to HTTP/1.0 is de-chunked and closes', req10, 200, 'chunked', true, false, false, { relay: 'dechunk', close: true, connection: 'close', codings: 'drop' }],
  ['200 to HTTP/1.0 keep-alive says keep-alive', req10, 200, 'length', false, false, false, { close: false, connection: 'keep-alive' }],
  ['close-delimited closes', req11, 200, 'close', false, false, false, { close: true, connection: 'close' }],
  ['close-delimited answer to HEAD keeps', { ...req11, isHead: true }, 200, 'none', false, false, false, { close: false }],
  ['HEAD answer announcing chunked keeps the line', { ...req11, isHead: true }, 200, 'none', true, false, false, { codings: 'chunked', relay: 'raw' }],
  ['304 never says chunked', req11, 304, 'none', true, false, false, { codings: 'drop' }],
  ['an unread request body closes', { ...req11, bodyDone: false }, 413, 'length', false, false, false, { close: true }],
  ['the client asked to close', { ...req11, keepAlive: false }, 200, 'length', false, false, false, { close: true, connection: 'close' }],
  ['draining closes', req11, 200, 'length', false, true, false, { close: true }],
]

test('planResponse: table', () => {
  const plan = new ResponsePlan()
  for (const [name, req, status, bodyKind, te, draining, allowed, expected] of rows) {
    planResponse(plan, req, status, bodyKind, te, draining, allowed)
    for (const [key, value] of Object.entries(expected)) assert.equal(plan[key as keyof ResponsePlan], value, `${name}: ${key}`)
  }
})
