/**
 * A task id, the app's or the solver's: 1–128 characters of `A-Z a-z 0-9 - _ . : ~`, so ids stay safe to log, to key
 * on and to put in a URL path unescaped. A leading `-` or `_` is allowed: nanoid and base64url ids start with one
 * about 3 % of the time.
 */
export const TASK_ID = /^[A-Za-z0-9._:~-]{1,128}$/;

/** The rule above in words, for 400 answers. */
export const TASK_ID_RULE = '1-128 characters of A-Z a-z 0-9 - _ . : ~';
