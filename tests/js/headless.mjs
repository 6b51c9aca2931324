// What the browser scripts share: the system Chromium, headless, and how a
// POS page's errors are collected.
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

/** Debian's Chromium (or $CHROMIUM), headless, never a downloaded browser. */
export function launch() {
  return chromium.launch({
    executablePath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * Record the POS page's errors in `report.errors`, each after `prefix`
 * (for example the screen size). A 401, 403 or 409 the console logs is a
 * refusal the POS handles (a refused PIN, a sign-out), not an error.
 */
export function watchPosErrors(page, report, prefix = "") {
  page.on("pageerror", (e) => report.errors.push(`${prefix}page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/40[139]/.test(m.text())) report.errors.push(`${prefix}console: ${m.text()}`);
  });
}

/** Sign `worker` in on the POS page with `pin`, through the PIN pad. */
export async function signIn(page, worker, pin) {
  await page.locator(`[data-worker="${worker}"]`).click();
  for (const d of pin) await page.locator(`[data-key="${d}"]`).click();
  await page.locator("#sign-in").click();
  await page.locator("nav.tabs").waitFor();
}
