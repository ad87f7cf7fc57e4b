/**
 * A real LogShipper pushing through a real IntakePusher to a real PULL socket, made afresh for each test of the
 * calling file: `received` holds every LogMessage that arrived, in order.
 */
import type * as zmq from 'zeromq';
import { afterEach, beforeEach } from 'vitest';
import { silentLogger } from '../../src/core/logger.js';
import { decodeIntake, type LogMessage } from '../../src/protocol/index.js';
import { LogShipper } from '../../src/runner/log-shipper.js';
import { IntakePusher, closeQuietly } from '../../src/transport/index.js';
import { testSockets } from './daemons.js';

export interface ShipperFixture {
  readonly shipper: LogShipper;
  readonly received: LogMessage[];
}

/** Call at the top level of a test file. */
export function shipperPerTest(): ShipperFixture {
  const received: LogMessage[] = [];
  let pull: zmq.Pull;
  let pusher: IntakePusher;
  let shipper: LogShipper;
  beforeEach(async () => {
    received.length = 0;
    pull = testSockets().pull();
    await pull.bind('tcp://127.0.0.1:*');
    void (async () => {
      try {
        for await (const [frame] of pull) received.push(decodeIntake(frame!) as LogMessage);
      } catch {
        // closed
      }
    })();
    pusher = new IntakePusher({ endpoints: [pull.lastEndpoint!], sockets: testSockets(), maxQueue: 10_000, what: 'log lines', log: silentLogger() });
    pusher.start();
    shipper = new LogShipper({ pusher, pollMs: 20, log: silentLogger() });
    shipper.start();
  });
  afterEach(async () => {
    await shipper.stop();
    await pusher.stop();
    closeQuietly(pull);
  });
  return {
    get shipper() {
      return shipper;
    },
    received,
  };
}
