/** The nexus's control protocol server: a RouterServer over the command table (src/protocol/control.ts). */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { decodeRequest, type CommandResult, type CommandType, type ControlRequest } from '../protocol/index.js';
import { RouterServer, type RouterServerStats } from './router-server.js';

/** Handles one command type; the returned value is the reply's result. */
export type Handler<T extends CommandType> = (request: ControlRequest<T>) => Promise<CommandResult<T>>;
export type HandlerMap = { [T in CommandType]?: Handler<T> };
export type ControlServerStats = RouterServerStats;

export class ControlServer extends RouterServer<ControlRequest> {
  constructor(router: zmq.Router, handlers: HandlerMap, maxMessageBytes: number, log: Logger) {
    super(router, {
      decode: decodeRequest,
      handlers: handlers as { [type: string]: (request: ControlRequest) => Promise<unknown> },
      maxMessageBytes,
      log,
      closing: { code: 'PIER_NEXUS_UNAVAILABLE', message: 'this nexus is shutting down; retry on another' },
    });
  }
}
