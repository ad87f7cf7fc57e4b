/** The collector's query ROUTER: `logs.tail`, `stats.query`, `stats.release`, in the control protocol's envelope. */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { decodeStatsQuery, type StatsQueryRequest, type StatsQueryResult, type StatsQueryType } from '../protocol/index.js';
import { RouterServer } from '../transport/index.js';

/** Answers one query type. */
export type QueryHandlers = { [T in StatsQueryType]: (request: StatsQueryRequest<T>) => Promise<StatsQueryResult<T>> };

export class QueryServer extends RouterServer<StatsQueryRequest> {
  constructor(router: zmq.Router, handlers: QueryHandlers, maxMessageBytes: number, log: Logger) {
    super(router, {
      decode: decodeStatsQuery,
      handlers: handlers as unknown as { [type: string]: (request: StatsQueryRequest) => Promise<unknown> },
      maxMessageBytes,
      log: log.child({ component: 'stats.query' }),
      closing: { code: 'PIER_STATS_UNAVAILABLE', message: 'this collector is shutting down; retry on another' },
    });
  }
}
