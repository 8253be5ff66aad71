/**
 * The usage text, shown by `--help` and after usage errors.
 *
 * @module
 */

/** Usage text shown by `--help` and after usage errors. */
export const USAGE = `Usage:
  main.ts [--once] [--force] [--repush] [--state <path|kv:[path]|memory:>] [--connections <file>] <list_id…>
  main.ts --dry-run [--json] [--state …] [--connections <file>] <list_id…>
  main.ts reconcile [--once] [--force] [--state …] [--connections <file>] <list_id…>
  main.ts verify [--sample <N>] [--repair] [--json] [--state …] [--connections <file>] [--connection <id>] <list_id…>
  main.ts status [--json] [--check] [--state …] [--connections <file>] [list_id…]
  main.ts reset [--repush] [--state …] <list_id…>
  main.ts explain <email|subscriber-hash> [--ometria] [--json] [--state …] (--connection <list_id> | --connections <file> [--connection <id>])
  main.ts webhooks register [--force] [--state …] [--connections <file>] --url <public base URL> <list_id…>
  main.ts webhooks list [--state …] [--connections <file>] <list_id…>
  main.ts erase <email…> [--mailchimp] [--state …] (--connection <list_id> | --connections <file> [--connection <id>])
  main.ts erase --status [--state …] [--connections <file>] [--connection <id>]
  main.ts demo | bench | healthcheck
  main.ts simulate [--mailchimp-port <port>] [--ometria-port <port>]

Unchanged members (their record hashes as the one Ometria acknowledged) are not sent again,
after reset too; --repush sends every member (a repair after Ometria was changed by hand),
--dry-run says what a run would send and writes nothing, explain tells one member's story.

Exit codes: 0 ok, 1 a list failed (status --check: a list is behind; verify: Ometria differs), 2 usage, configuration
or state error, 3 a --once run was stopped by SIGINT/SIGTERM before it finished.

Keys come from MAILCHIMP_API_KEY and OMETRIA_API_KEY (or the variables a connections file
names). See README.md for every variable and flag.`;
