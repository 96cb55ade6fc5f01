/**
 * Header names the proxy must recognise, classified once per header while the
 * head is parsed: compare the length first, then the bytes, case-insensitively.
 */
import { LOWER, ascii } from './tables'

export const H_OTHER = 0
export const H_CONTENT_LENGTH = 1
export const H_TRANSFER_ENCODING = 2
export const H_CONNECTION = 3
export const H_KEEP_ALIVE = 4
export const H_PROXY_CONNECTION = 5
export const H_TE = 6
export const H_UPGRADE = 7
export const H_TRAILER = 8
export const H_HOST = 9
export const H_EXPECT = 10
export const H_X_FORWARDED_FOR = 11
export const H_X_FORWARDED_PROTO = 12
export const H_FORWARDED = 13
export const H_VIA = 14
export const H_COOKIE = 15
export const H_SET_COOKIE = 16
export const H_AUTHORIZATION = 17
export const H_PROXY_AUTHORIZATION = 18
export const H_AGE = 19
export const H_HTTP2_SETTINGS = 20
/** Read by the access log only (classified so that it finds them by kind): header() looks them up by name. */
export const H_USER_AGENT = 21
export const H_REFERER = 22

const known: Array<[string, number]> = [
  ['content-length', H_CONTENT_LENGTH],
  ['transfer-encoding', H_TRANSFER_ENCODING],
  ['connection', H_CONNECTION],
  ['keep-alive', H_KEEP_ALIVE],
  ['proxy-connection', H_PROXY_CONNECTION],
  ['te', H_TE],
  ['upgrade', H_UPGRADE],
  ['trailer', H_TRAILER],
  ['host', H_HOST],
  ['expect', H_EXPECT],
  ['x-forwarded-for', H_X_FORWARDED_FOR],
  ['x-forwarded-proto', H_X_FORWARDED_PROTO],
  ['forwarded', H_FORWARDED],
  ['via', H_VIA],
  ['cookie', H_COOKIE],
  ['set-cookie', H_SET_COOKIE],
  ['authorization', H_AUTHORIZATION],
  ['proxy-authorization', H_PROXY_AUTHORIZATION],
  ['age', H_AGE],
  ['http2-settings', H_HTTP2_SETTINGS],
]
/** Classified for the access log alone: classifyName leaves them out (config/load.ts: the request ID's field may be one). */
const logged: Array<[string, number]> = [
  ['user-agent', H_USER_AGENT],
  ['referer', H_REFERER],
]
const byName = new Map<string, number>(known)

// byLength[n] = list of [bytes, kind] of names with n bytes
const byLength: Array<Array<[Uint8Array, number]>> = []
for (const [name, kind] of [...known, ...logged]) {
  (byLength[name.length] ??= []).push([ascii(name), kind])
}

export function classifyHeader (buf: Uint8Array, start: number, end: number): number {
  const candidates = byLength[end - start]
  if (candidates === undefined) return H_OTHER
  outer:
  for (let c = 0; c < candidates.length; c++) {
    const name = candidates[c][0]
    for (let i = 0; i < name.length; i++) if (LOWER[buf[start + i]] !== name[i]) continue outer
    return candidates[c][1]
  }
  return H_OTHER
}

/** The kind of a lower-case field name given as a string (H_OTHER when the parser does not classify it, or only for the access log). */
export function classifyName (lowerName: string): number {
  return byName.get(lowerName) ?? H_OTHER
}
