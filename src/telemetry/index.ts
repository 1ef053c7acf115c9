/**
 * telemetry — logs (and, with fan-out, traces and metrics). Secrets are kept
 * out of logged objects by construction; redaction is only a second net.
 */
export { createLogger } from './logger.ts';
