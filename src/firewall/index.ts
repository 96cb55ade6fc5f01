/**
 * The request firewall's public face. The proxy builds one per thread at
 * start-up (`createFirewall`, or null when `config.firewall` is absent) and
 * calls `evaluate(view)` once per request; config loading can call
 * `firewallConfigErrors` to report problems before anything binds.
 */
export { createFirewall, Firewall, FIREWALL_PASS } from './firewall'
export { firewallConfigErrors } from './rules'
export { BUILTIN_RULES } from './builtin'
export { MAX_DECODE_ROUNDS } from './decode'
export type { FirewallRequest, FirewallVerdict, FirewallAction, FirewallLog } from './types'
