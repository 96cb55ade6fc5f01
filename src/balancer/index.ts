/**
 * Build the Balancer the config asks for. Called once per thread whenever the
 * upstream table is (re)built; everything an algorithm can precompute (slots,
 * weight sequences, the hash ring) is done here, off the data path.
 */
import type { Config } from '../config/types'
import { SwitchyardError } from '../errors'
import type { UpstreamEntry } from '../shared/state'
import { ConsistentHashBalancer } from './consistent-hash'
import { IpHashBalancer } from './ip-hash'
import { LeastConnectionsBalancer } from './least-connections'
import { PowerOfTwoChoicesBalancer } from './power-of-two-choices'
import { RandomBalancer } from './random'
import { RoundRobinBalancer } from './round-robin'
import type { Balancer, BalancerState } from './types'
import { WeightedRoundRobinBalancer } from './weighted-round-robin'

export { ConsistentHashBalancer } from './consistent-hash'
export { IpHashBalancer, type HashBalancerOptions } from './ip-hash'
export { LeastConnectionsBalancer } from './least-connections'
export { PowerOfTwoChoicesBalancer } from './power-of-two-choices'
export { RandomBalancer } from './random'
export { RoundRobinBalancer } from './round-robin'
export { WeightedRoundRobinBalancer } from './weighted-round-robin'
export { PickContext, type Balancer, type BalancerState } from './types'

export function createBalancer (balancing: Config['balancing'], table: readonly UpstreamEntry[], state: BalancerState): Balancer {
  // With source 'ip' the request path leaves ctx.hashKey empty anyway; the
  // flag makes the hash balancers ignore it even if it does not.
  const hashOptions = { clientIpOnly: balancing.hashKey.source === 'ip' }
  const algorithm = balancing.algorithm
  switch (algorithm) {
    case 'round-robin': return new RoundRobinBalancer(table, state)
    case 'weighted-round-robin': return new WeightedRoundRobinBalancer(table, state)
    case 'least-connections': return new LeastConnectionsBalancer(table, state)
    case 'power-of-two-choices': return new PowerOfTwoChoicesBalancer(table, state)
    case 'random': return new RandomBalancer(table, state)
    case 'ip-hash': return new IpHashBalancer(table, state, hashOptions)
    case 'consistent-hash': return new ConsistentHashBalancer(table, state, hashOptions)
    default: {
      // Unreachable after schema validation; the `never` makes a new name in
      // `algorithms` without a case here a compile error.
      const unknown: never = algorithm
      throw new SwitchyardError('SWY_ERR_CONFIG_INVALID', `unknown balancing algorithm ${JSON.stringify(unknown)}`)
    }
  }
}
