/**
 * The nexus's control protocol server: a RouterServer over the command table (src/protocol/control.ts). With
 * CURVE on, every request must carry a proof of the key that sent it (src/transport/peer-proof.ts); the key's
 * role must be one COMMAND_ROLES lists for the command, and a node key may only act as the node it is named for.
 */
import type * as zmq from 'zeromq';
import type { Logger } from 'pino';
import { PierError } from '../core/errors.js';
import {
  COMMAND_ROLES, decodeRequest, type CommandResult, type CommandType, type ControlRequest, type PeerRole,
} from '../protocol/index.js';
import type { KeyIdentity } from './keys.js';
import { ProofVerifier } from './peer-proof.js';
import { RouterServer, type RouterServerStats } from './router-server.js';

/** Handles one command type; the returned value is the reply's result. */
export type Handler<T extends CommandType> = (request: ControlRequest<T>) => Promise<CommandResult<T>>;
export type HandlerMap = { [T in CommandType]?: Handler<T> };
export type ControlServerStats = RouterServerStats;

/** Who may call: the server's secret key (to check proofs) and the allowed keys with their roles. */
export interface ControlAccess {
  serverSecretKey: string;
  keyring: ReadonlyMap<string, KeyIdentity>;
}

/** Roles whose keys are named for one node: they may only register and report as that node. */
const NODE_ROLES: ReadonlySet<PeerRole> = new Set(['runner', 'balancer', 'stats']);

function forbidden(message: string): PierError {
  return new PierError('PIER_FORBIDDEN', message);
}

/** Refuses `request` unless `proof` shows a key whose role may call it (and, for node keys, as itself). */
export function authorizeCommand(verifier: ProofVerifier<KeyIdentity>, request: ControlRequest, proof: Buffer | undefined, payload: Buffer): KeyIdentity {
  const caller = verifier.verify(proof, payload);
  if (!caller) {
    throw forbidden(`'${request.type}' was not signed by an allowed key; the client must send its key proof (Pier's ControlClient does)`);
  }
  const roles = COMMAND_ROLES[request.type];
  if (!roles.includes(caller.role)) {
    throw forbidden(`'${request.type}' may be called by ${roles.join(' or ')} keys only; the key of ${caller.role} '${caller.name}' may not`);
  }
  if (NODE_ROLES.has(caller.role)) {
    const body = request as { nodeId?: unknown; kind?: unknown };
    if (body.nodeId !== undefined && body.nodeId !== caller.name) {
      throw forbidden(`the key of ${caller.role} '${caller.name}' may only act as node '${caller.name}', not '${String(body.nodeId)}'`);
    }
    if (body.kind !== undefined && body.kind !== caller.role) {
      throw forbidden(`the key of ${caller.role} '${caller.name}' may not register as a ${String(body.kind)}`);
    }
  }
  return caller;
}

export class ControlServer extends RouterServer<ControlRequest, KeyIdentity> {
  constructor(router: zmq.Router, handlers: HandlerMap, maxMessageBytes: number, log: Logger, access?: ControlAccess) {
    const verifier = access ? new ProofVerifier(access.serverSecretKey, access.keyring) : undefined;
    const table = { ...handlers } as { [type: string]: (request: ControlRequest, caller: KeyIdentity | undefined) => Promise<unknown> };
    const spec = table['instance.spec'];
    if (verifier && spec) {
      // A spec carries the app's config vars: a runner gets only the specs of instances placed on it.
      table['instance.spec'] = async (request, caller) => {
        const result = (await spec(request, caller)) as CommandResult<'instance.spec'>;
        if (caller?.role === 'runner' && result.runnerId !== caller.name) {
          throw forbidden(`instance '${result.instanceId}' is not placed on runner '${caller.name}'`);
        }
        return result;
      };
    }
    super(router, {
      decode: decodeRequest,
      handlers: table,
      maxMessageBytes,
      log,
      closing: { code: 'PIER_NEXUS_UNAVAILABLE', message: 'this nexus is shutting down; retry on another' },
      ...(verifier ? { authorize: (request: ControlRequest, proof: Buffer | undefined, payload: Buffer) => authorizeCommand(verifier, request, proof, payload) } : {}),
    });
  }
}
