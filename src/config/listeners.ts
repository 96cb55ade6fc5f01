/**
 * `listen` in its two forms as one list: a "HOST:PORT" string is one plain
 * listener. Everything that binds or serves reads listeners through here.
 */
import type { Config, ListenerConfig } from './types'

const plainCache = new WeakMap<Config, readonly ListenerConfig[]>()

export function listenersOf (config: Config): readonly ListenerConfig[] {
  const listen = config.listen
  if (typeof listen !== 'string') return listen
  let list = plainCache.get(config)
  if (list === undefined) {
    list = Object.freeze([Object.freeze({ address: listen, httpsRedirect: false })])
    plainCache.set(config, list)
  }
  return list
}

/** A short name for logs and metric labels: the configured address. */
export function listenerName (listener: ListenerConfig): string {
  return listener.address
}

/** Same sockets (address, PROXY protocol and TLS on or off, in order): anything else needs a restart. */
export function sameBindings (a: Config, b: Config): boolean {
  const x = listenersOf(a)
  const y = listenersOf(b)
  if (x.length !== y.length) return false
  for (let i = 0; i < x.length; i++) {
    if (x[i].address !== y[i].address || (x[i].tls === undefined) !== (y[i].tls === undefined)) return false
  }
  return true
}
