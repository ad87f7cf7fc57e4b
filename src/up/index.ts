export * from './paths.js';
export * from './platform.js';
export * from './state.js';
export * from './data-dir.js';
