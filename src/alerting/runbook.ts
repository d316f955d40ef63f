/** The repository path of the runbook, relative to the repository root (and to the installed package's root). */
export const RUNBOOK_PATH = 'docs/runbook.md';

/**
 * The default base of every rule's `runbook_url`: the runbook as shipped, a path relative to the repository (and to
 * the installed npm package). There is no public copy to point at, so a link that resolves for people reading your
 * alerts needs the monitoring config's `runbookBaseUrl` set to where your copy lives (a wiki page, your fork's
 * `docs/runbook.md` on your Git host). A test checks that each anchor names a real heading of the runbook.
 */
export const RUNBOOK_BASE_URL = RUNBOOK_PATH;

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

/** The runbook link of an alert: `base#anchor` (base: the monitoring config's runbookBaseUrl). */
export function runbookUrl(anchor: string, base: string = RUNBOOK_BASE_URL): string {
  return `${base}#${anchor}`;
}
