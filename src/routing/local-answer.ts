/**
 * A route's own answer, without an upstream: a redirect (`Location` from a
 * template) or a fixed response (status, body, content type). The fixed one
 * is built once per variant; a redirect renders its location per request.
 */
import { reasonPhrase } from '../http/replies'
import type { Template, TemplateSource } from './templates'

export class LocalAnswer {
  readonly status: number
  private readonly location: Template | null
  private readonly body: Buffer
  private readonly contentType: string
  /** [keep-alive, close] x [with body, without (HEAD)], when no line depends on the request. */
  private readonly prebuilt: Buffer[] | null

  private constructor (status: number, location: Template | null, body: string, contentType: string) {
    this.status = status
    this.location = location
    this.body = Buffer.from(body, 'utf8')
    this.contentType = contentType
    this.prebuilt = location === null ? [this.build('', false, false, ''), this.build('', false, true, ''), this.build('', true, false, ''), this.build('', true, true, '')] : null
  }

  static redirect (status: number, location: Template): LocalAnswer {
    return new LocalAnswer(status, location, '', '')
  }

  static fixed (status: number, body: string, contentType: string): LocalAnswer {
    return new LocalAnswer(status, null, body, contentType)
  }

  /** The response bytes; `extra` is more field lines (the route's responseHeaders), each ending in CRLF. */
  render (src: TemplateSource, close: boolean, head: boolean, extra: string): Buffer {
    if (this.prebuilt !== null && extra === '') return this.prebuilt[(close ? 2 : 0) + (head ? 1 : 0)]
    // a Location rendered from the request: CR, LF and NUL cannot reach a field line (RFC 9110 §5.5)
    const location = this.location !== null ? this.location.render(src).replace(/[\r\n\0]/g, '') : ''
    return this.build(location, close, head, extra)
  }

  private build (location: string, close: boolean, head: boolean, extra: string): Buffer {
    const bodyBytes = this.body.length
    const headText = `HTTP/1.1 ${this.status} ${reasonPhrase(this.status)}\r\n` +
      (this.location !== null ? `Location: ${location}\r\n` : '') +
      (bodyBytes > 0 || this.location === null ? `Content-Type: ${this.contentType}\r\n` : '') +
      // RFC 9110 §8.6: no Content-Length in a 204 (nor a body, §15.3.5)
      (this.status === 204 ? '' : `Content-Length: ${bodyBytes}\r\n`) +
      extra +
      (close ? 'Connection: close\r\n' : '') + '\r\n'
    const h = Buffer.from(headText, 'latin1')
    return head || bodyBytes === 0 || this.status === 204 || this.status === 304 ? h : Buffer.concat([h, this.body])
  }
}
