export * from './errors.js';
export * from './logger.js';
export * from './service.js';
export * from './wait.js';
export * from './ids.js';
export * from './daemon.js';
export * from './process.js';
export * from './coalesce.js';
