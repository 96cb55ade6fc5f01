/**
 * Canned responses the proxy writes itself (errors, 429, 403): short plain
 * text bodies that say what went wrong in catalogue words and leak nothing
 * (no addresses, no stack traces). Prebuilt per code at load time.
 */
import { errorCatalogue, type ErrorCode } from '../errors'
import { proxyErrorType, proxyStatusLine } from './proxy-status'

const REASONS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  410: 'Gone',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
}

export function reasonPhrase (status: number): string {
  return REASONS[status] ?? (status < 400 ? 'Status' : 'Error')
}

function build (code: ErrorCode, close: boolean, extraHeaders: string, head: boolean, proxyStatus: string | null = null): Buffer {
  const { status, message } = errorCatalogue[code]
  // RFC 9209: every response switchyard makes itself says why, in the Proxy-Status field
  const statusField = proxyStatus ?? proxyStatusLine(proxyErrorType(code), null)
  const body = `${status} ${reasonPhrase(status)}: ${message}\n`
  return Buffer.from(
    `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Cache-Control: no-store\r\n' +
    statusField +
    extraHeaders +
    (close ? 'Connection: close\r\n' : '') +
    '\r\n' + (head ? '' : body), 'latin1')
}

// per code, four variants: [keep-alive, close] x [with body, without (HEAD)]
const prebuilt = new Map<ErrorCode, Buffer[]>()
for (const code of Object.keys(errorCatalogue) as ErrorCode[]) {
  prebuilt.set(code, [build(code, false, '', false), build(code, false, '', true), build(code, true, '', false), build(code, true, '', true)])
}

/** The canned response for `code`; `head` leaves the body out (answer to HEAD). */
export function errorReply (code: ErrorCode, close: boolean, head = false): Buffer {
  return (prebuilt.get(code) as Buffer[])[(close ? 2 : 0) + (head ? 1 : 0)]
}

/** A canned response with extra header lines (CRLF-terminated), e.g. the rate-limit fields of a 429. */
export function errorReplyWith (code: ErrorCode, close: boolean, extraHeaders: string, head = false, proxyStatus: string | null = null): Buffer {
  return build(code, close, extraHeaders, head, proxyStatus)
}
