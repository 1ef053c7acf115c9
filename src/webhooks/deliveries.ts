/** Reading an installation's delivery log (admin): newest first, paged by id. */
import type { Sql } from '../db/client.ts';
import { getInstallation } from '../packages/installation-read.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import { listDeliveries, type DeliveryLog, type DeliveryView } from './delivery-log.ts';

export interface ListDeliveriesInput {
  installationId: string;
  after?: string | undefined;
  limit: number;
}

/** 404 when the installation is not the org's; its deliveries otherwise, whatever its status. */
export async function listInstallationDeliveries(
  deps: { sql: Sql; deliveries: Pick<DeliveryLog, 'settled'> },
  { ctx, input }: VerbCall<ListDeliveriesInput>,
): Promise<{ data: DeliveryView[]; next_cursor: string | null }> {
  await getInstallation(deps, { ctx, input: { id: input.installationId } });
  // Rows this process is still writing (a concurrent rejection's) are waited for.
  await deps.deliveries.settled(ctx.tenant);
  return listDeliveries(ctx.tx?.sql ?? deps.sql, ctx.tenant, input);
}
