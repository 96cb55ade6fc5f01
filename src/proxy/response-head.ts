/**
 * The response-head phase as a decision (Pingora's response_filter): what a
 * response head from an upstream means for the client connection, as a pure
 * function of the head's status and framing and of the request it answers.
 * The connection acts on the plan; tested as a table in
 * test/unit/response-head.test.ts.
 */
import type { BodyKind } from '../http/head-parser'
import type { ConnectionField, TransferFraming } from '../http/serialize'
import type { BodyRelay } from './exchange'

/**
 * interim:           relay the 1xx (RFC 9110 §15.2) and wait for the final head
 * interimDropped:    an HTTP/1.0 client gets no 1xx; wait for the final head
 * tunnel:            a 101 to an upgrade we asked for, to an allowed protocol
 * unexpectedUpgrade: any other 101: the upstream stopped speaking HTTP (502)
 * final:             relay this head and its body as `relay`, `connection`, `codings` say
 */
export type ResponseKind = 'interim' | 'interimDropped' | 'tunnel' | 'unexpectedUpgrade' | 'final'

/** What the phase reads of the request the response answers. */
export interface RequestFacts {
  readonly http10: boolean
  readonly isHead: boolean
  readonly upgrading: boolean
  /** The client allows another request on this connection. */
  readonly keepAlive: boolean
  /** The whole request body was read (else the connection cannot carry on). */
  readonly bodyDone: boolean
}

/** The decision, one object per connection, filled in per response. */
export class ResponsePlan {
  kind: ResponseKind = 'final'
  relay: BodyRelay = 'raw'
  /** Close the client connection after this response. */
  close = false
  connection: ConnectionField = 'none'
  codings: TransferFraming = 'drop'
}

export function planResponse (plan: ResponsePlan, req: RequestFacts, status: number, bodyKind: BodyKind, hasTransferEncoding: boolean,
  draining: boolean, upgradeAllowed: boolean): ResponsePlan {
  if (status < 200 && status !== 101) {
    plan.kind = req.http10 ? 'interimDropped' : 'interim'
    return plan
  }
  if (status === 101) {
    plan.kind = req.upgrading && upgradeAllowed ? 'tunnel' : 'unexpectedUpgrade'
    return plan
  }
  plan.kind = 'final'
  // RFC 9112 §6.1: no chunked to an HTTP/1.0 client: the body goes de-chunked and the close ends it
  plan.relay = bodyKind === 'chunked' ? (req.http10 ? 'dechunk' : 'rechunk') : 'raw'
  // keep the client connection only while its framing stays known
  plan.close = !req.keepAlive || draining || !req.bodyDone || plan.relay === 'dechunk' || (bodyKind === 'close' && !req.isHead)
  plan.connection = plan.close ? 'close' : (req.http10 ? 'keep-alive' : 'none')
  // the Transfer-Encoding line says chunked only where switchyard re-chunks (or a HEAD answer announces it)
  plan.codings = hasTransferEncoding && !req.http10 && status !== 204 && status !== 304 ? 'chunked' : 'drop'
  return plan
}
