#!/usr/bin/env node
// npm's `pier` bin: the compiled CLI (run `npm run build` first; ./pier at the repository root does it for you).
import '../dist/cli/main.js';
