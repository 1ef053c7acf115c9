/** Retry, disable, enable and uninstall: an id, no body, the installation back. */
import { createRoute } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import type { InstallationDeps } from '../../../packages/installation-steps.ts';
import type { Installation } from '../../../packages/installation-read.ts';
import { retryInstallation, setInstallationEnabled, uninstallInstallation } from '../../../packages/installations.ts';
import type { VerbContext } from '../../../signals/verb-context.ts';
import { requireAccess, verbContextOf, type ApiApp, type ApiContext } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { InstallationParams, InstallationResponse } from '../../schemas-installations.ts';
import { viewOf } from './view.ts';

type Action = (deps: InstallationDeps, call: { ctx: VerbContext; input: { id: string } }) => Promise<Installation>;

interface ActionSpec {
  method: 'post' | 'delete';
  suffix: string;
  operationId: string;
  summary: string;
  description: string;
}

const actionBase = (spec: ActionSpec) => ({
  method: spec.method,
  path: `/v1/orgs/{org}/installations/{id}${spec.suffix}`,
  operationId: spec.operationId,
  tags: ['Installations'],
  summary: spec.summary,
  description: `Role: admin. ${spec.description}`,
  middleware: [requireAccess('org:admin')],
  request: { params: InstallationParams },
});

/** Done at once: 200. */
const doneRoute = (spec: ActionSpec) =>
  createRoute({ ...actionBase(spec), responses: { 200: jsonResponse(InstallationResponse, spec.summary), ...errorResponses(409) } });
/** A job does it: 202. */
const queuedRoute = (spec: ActionSpec) =>
  createRoute({ ...actionBase(spec), responses: { 202: jsonResponse(InstallationResponse, spec.summary), ...errorResponses(409) } });

const ACTIONS = [
  {
    route: queuedRoute({
      method: 'post', suffix: '/retry', operationId: 'retryInstallation',
      summary: 'Run a failed install, upgrade or uninstall again',
      description: 'Its next attempt runs every step again; a step that already proposed or emitted something finds it by its key. Nothing failed: 409.',
    }),
    verb: retryInstallation as Action,
    status: 202 as const,
  },
  {
    route: doneRoute({
      method: 'post', suffix: '/disable', operationId: 'disableInstallation',
      summary: 'Disable an installed package: its handlers, schemas, policies and webhook stop',
      description: 'Recorded as `installation.disabled`; an installation that is not `installed` is 409.',
    }),
    verb: ((deps, { ctx, input }) => setInstallationEnabled(deps, { ctx, input: { id: input.id, enabled: false } })) as Action,
    status: 200 as const,
  },
  {
    route: doneRoute({
      method: 'post', suffix: '/enable', operationId: 'enableInstallation',
      summary: 'Enable a disabled installation again',
      description: 'Recorded as `installation.enabled`; an installation that is not `disabled` is 409.',
    }),
    verb: ((deps, { ctx, input }) => setInstallationEnabled(deps, { ctx, input: { id: input.id, enabled: true } })) as Action,
    status: 200 as const,
  },
  {
    route: queuedRoute({
      method: 'delete', suffix: '', operationId: 'uninstallInstallation',
      summary: 'Uninstall: the package stops and its secrets leave the vault; its signals stay in the log',
      description: 'A job records `installation.uninstalled`; the status is final.',
    }),
    verb: uninstallInstallation as Action,
    status: 202 as const,
  },
];

export function registerInstallationActions(app: ApiApp) {
  for (const { route, verb, status } of ACTIONS) {
    const run = async (c: ApiContext) => {
      const id = c.req.param('id') ?? '';
      if (!isId('installation', id)) throw notFound('installation');
      return viewOf(c, await verb(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id } }));
    };
    if (status === 202) app.openapi(route as ReturnType<typeof queuedRoute>, async (c) => c.json({ installation: await run(c) }, 202));
    else app.openapi(route as ReturnType<typeof doneRoute>, async (c) => c.json({ installation: await run(c) }, 200));
  }
}
