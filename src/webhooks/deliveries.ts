/** Reading an installation's delivery log (admin): newest first, paged by id. */
import type { Sql } from '../db/client.ts';
import { getInstallation } from '../packages/installation-read.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import { listDeliveries, type DeliveryView } from './delivery-log.ts';

export interface ListDeliveriesInput {
  installationId: string;
  after?: string | undefined;
  limit: number;
}

/** 404 when the installation is not the org's; its deliveries otherwise, whatever its status. */
export async function listInstallationDeliveries(
  deps: { sql: Sql },
  { ctx, input }: VerbCall<ListDeliveriesInput>,
): Promise<{ data: DeliveryView[]; next_cursor: string | null }> {
  await getInstallation(deps, { ctx, input: { id: input.installationId } });
  return listDeliveries(ctx.tx?.sql ?? deps.sql, ctx.tenant, input);
}
