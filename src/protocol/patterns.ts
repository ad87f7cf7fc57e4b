/**
 * The name patterns of every conversation and their human wording: plain strings without TypeBox, because the CLI
 * loads them at start-up (common.ts re-exports them beside the schemas built on them).
 */

/** Heroku's rule: lowercase letters, digits and dashes, starting with a letter, at most 30 characters. */
export const APP_NAME_PATTERN = '^[a-z][a-z0-9-]{0,29}$';

/** A DNS name (lowercase) or a wildcard `*.example.com`; at most 253 characters. */
export const HOSTNAME_PATTERN = '^(\\*\\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';

/** Config var names are shell-style environment variable names. */
export const CONFIG_KEY_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,254}$';

/**
 * Values must fit a uWSGI ini line (the runner writes them into the vassal): one line, no control characters,
 * no trailing space or tab, and no '%(' (an option reference uWSGI expands and cannot escape).
 */
export const CONFIG_VALUE_PATTERN = '^(?!.*%\\()[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*(?<![ \\t])$';

/** Human wording for the patterns above, used in validation errors instead of the raw regular expression. */
export const PATTERN_HINTS: Record<string, string> = {
  [APP_NAME_PATTERN]: 'must be lowercase letters, digits and dashes, start with a letter, and be at most 30 characters',
  [HOSTNAME_PATTERN]: "must be a lowercase hostname such as 'www.example.com' or '*.example.com'",
  [CONFIG_KEY_PATTERN]: 'must be letters, digits and underscores, not starting with a digit',
  [CONFIG_VALUE_PATTERN]: "must be one line with no control characters, no trailing space and no '%('",
  '^[a-z0-9][a-z0-9.-]{0,62}$': 'must be lowercase letters, digits, dots and dashes',
};

/** The add-on kinds Pier knows (a platform may offer fewer); what `pier addons:create KIND` takes. */
export const ADDON_KIND_NAMES = ['postgresql', 'redis'] as const;

/** Add-on names as the platform makes them: `<kind>-<word>-<digits>`, e.g. 'postgresql-amber-48213'. */
export const ADDON_NAME_PATTERN = '^[a-z][a-z0-9-]{1,62}$';
