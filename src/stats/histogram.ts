/** Moved to src/core (the nexus's deploy verdict reads histograms too); kept here for the collector's imports. */
export * from '../core/histogram.js';
