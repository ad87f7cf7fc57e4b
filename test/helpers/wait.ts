export { waitFor, sleep } from '../../src/core/wait.js';
