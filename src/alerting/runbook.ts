/**
 * Where the runbook lives. Every rule's `runbook_url` is this base plus the GitHub anchor of the alert's heading in
 * docs/runbook.md (a test checks that each anchor names a real heading). Change the base here, nowhere else.
 */
export const RUNBOOK_BASE_URL =
  'https://github.com/captcha-callback-monitor/captcha-callback-monitor/blob/main/docs/runbook.md';

/** The repository path of the runbook, relative to the repository root. */
export const RUNBOOK_PATH = 'docs/runbook.md';

/**
 * GitHub's heading anchor: lower-cased, punctuation other than `-` and `_` dropped, spaces turned into `-`.
 * (Enough for the ASCII headings the runbook uses; duplicates would get `-1` suffixes, which the runbook avoids.)
 */
export function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

export function runbookUrl(anchor: string): string {
  return `${RUNBOOK_BASE_URL}#${anchor}`;
}
