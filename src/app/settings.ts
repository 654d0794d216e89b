// App settings, parsed once at start with errors naming the setting. local.settings.example.json and
// the Bicep list exactly these keys.
import { z } from 'zod';

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const settingsSchema = z
  .object({
    AzureWebJobsStorage: z
      .string()
      .min(1)
      .optional()
      .describe('Connection string (local development / Azurite only)'),
    AzureWebJobsStorage__queueServiceUri: z.url().optional(),
    AzureWebJobsStorage__tableServiceUri: z.url().optional(),
    AzureWebJobsStorage__blobServiceUri: z.url().optional(),
    AzureWebJobsStorage__credential: z.literal('managedidentity').optional(),
    AzureWebJobsStorage__clientId: z.string().optional(),
    AZURE_CLIENT_ID: z
      .string()
      .optional()
      .describe('Client id of the user-assigned managed identity (Key Vault, storage)'),
    POLICY_FILE: z.string().min(1).optional().describe('Path of the policy file (local use)'),
    POLICY_BLOB_URL: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe('Blob holding the policy file, read with the managed identity'),
    SCHEDULER_SCHEDULE: z.string().default('0 */1 * * * *'),
    MAILBOX_TIME_BUDGET_SECONDS: positiveInt(240).describe(
      'A mailbox worker stops and continues in a new message after this long',
    ),
    POLICY_LEASE_MINUTES: positiveInt(360).describe(
      'A run that makes no progress holds its policy this long (progress renews it)',
    ),
    CERTIFICATE_CHECK_MINUTES: z.coerce
      .number()
      .min(0)
      .default(10)
      .describe('How often a worker checks Key Vault for a renewed certificate'),
    CERTIFICATE_ROTATION_SCHEDULE: z
      .string()
      .default('0 17 3 * * *')
      .describe('When the daily certificate rotation check runs (NCRONTAB, UTC)'),
    CERTIFICATE_OVERLAP_DAYS: z.coerce
      .number()
      .min(0)
      .default(7)
      .describe('Days both keys stay on the application after a roll, before the old one is removed'),
    RUN_HISTORY_DAYS: z.coerce
      .number()
      .int('RUN_HISTORY_DAYS must be a whole number of days')
      .min(1, 'RUN_HISTORY_DAYS must be at least 1 (day)')
      .max(3650, 'RUN_HISTORY_DAYS must be at most 3650 (days)')
      .default(90)
      .describe('Days a run record is kept; older runs and their rows are deleted by the scheduler'),
    FOLDER_NAME_CHECK_HOURS: z.coerce
      .number()
      .min(0, 'FOLDER_NAME_CHECK_HOURS must be 0 (every run) or more hours')
      .max(8760, 'FOLDER_NAME_CHECK_HOURS must be at most 8760 (hours, a year)')
      .default(24)
      .describe("How often each mailbox's folder name is read, so a user's rename is undone (0: every run)"),
    DASHBOARD_TENANT_ID: z.string().optional().describe('Entra tenant whose admins sign in to the dashboard'),
    DASHBOARD_CLIENT_ID: z.string().optional().describe("The dashboard's app registration (app roles)"),
    DASHBOARD_AUTHORITY_HOST: z.url().default('https://login.microsoftonline.com'),
    DASHBOARD_LOCAL_SIGN_IN: z
      .enum(['true', 'false'])
      .optional()
      .transform((v) => v === 'true')
      .describe('Local sign-in stand-in for the dashboard (refused in Azure)'),
  })
  .superRefine((s, ctx) => {
    if (!s.POLICY_FILE && !s.POLICY_BLOB_URL)
      ctx.addIssue({
        code: 'custom',
        path: ['POLICY_BLOB_URL'],
        message: 'set POLICY_BLOB_URL (or POLICY_FILE for local use)',
      });
    if (
      !s.AzureWebJobsStorage &&
      !(s.AzureWebJobsStorage__queueServiceUri && s.AzureWebJobsStorage__tableServiceUri)
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['AzureWebJobsStorage__tableServiceUri'],
        message:
          'set AzureWebJobsStorage__queueServiceUri and __tableServiceUri (identity-based), or AzureWebJobsStorage',
      });
    }
  });
export type Settings = z.output<typeof settingsSchema>;

/** The keys the app reads (the Bicep and local.settings.example.json are checked against this). */
export const settingKeys = Object.keys(settingsSchema.shape);

/** Settings for local use only; in Azure the identity-based ones and the policy blob replace them. */
export const localOnlySettingKeys = ['AzureWebJobsStorage', 'POLICY_FILE', 'DASHBOARD_LOCAL_SIGN_IN'];

export class SettingsError extends Error {}

export function parseSettings(env: Record<string, string | undefined>): Settings {
  // An empty setting (as local.settings.example.json lists them) means "not set".
  const set = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = settingsSchema.safeParse(set);
  if (!parsed.success) {
    throw new SettingsError(
      `app settings are invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}
