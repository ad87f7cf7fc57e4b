export * from './sockets.js';
export * from './control-client.js';
export * from './control-server.js';
export * from './event-follower.js';
export * from './heartbeat.js';
export * from './keys.js';
export * from './zap.js';
