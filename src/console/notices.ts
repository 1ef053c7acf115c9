/**
 * What an action redirects with: a code in the query, shown as fixed text,
 * so a crafted link cannot put words on a console page.
 */
const NOTICES: Record<string, string> = {
  signed_out: 'Signed out.',
  approved: 'Directive approved.',
  rejected: 'Directive rejected.',
  retried: 'Execution queued for another attempt.',
  policy_saved: 'Policy saved.',
  secret_set: 'Secret stored.',
  secret_deleted: 'Secret deleted.',
  org_created: 'Organization created.',
  installation_changed: 'Installation updated.',
  installation_configured: 'Config saved.',
  installation_secrets_set: 'Secrets stored.',
  installation_upgrading: 'Upgrade requested; it runs in the background.',
};

export function noticeText(code: string | undefined): string | undefined {
  return code !== undefined && Object.hasOwn(NOTICES, code) ? NOTICES[code] : undefined;
}

export function withNotice(path: string, code: keyof typeof NOTICES & string): string {
  return `${path}${path.includes('?') ? '&' : '?'}notice=${code}`;
}
