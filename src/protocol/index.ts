export * from './common.js';
export * from './events.js';
export * from './control.js';
export * from './api.js';
export * from './codec.js';
export * from './stats.js';
export * from './limits.js';
export * from './hostname-rules.js';
