// Drives the hub's HQ dashboard in headless Chromium (Debian's system
// package; playwright-core never downloads a browser) and prints what it
// saw as one JSON object on stdout. tests/tests/browser_dashboard.rs sets up
// the hub and asserts on that JSON.
//
//   node dashboard.mjs <hub base URL> <HQ user> <password> <list date YYYY-MM-DD> \
//        <screenshot.png> [drill-down screenshot.png]
//
// Steps: a wrong password is refused; the right one signs in for a session
// (a cookie the page's script cannot read); wait for a store
// to show online; read the grid and the past-due table; open the first
// grid cell's drill-down and read every task's status, history and conflict;
// sign out, and the old session's cookie is refused.
import { launch } from "./headless.mjs";

const [base, user, password, date, shot, drillShot] = process.argv.slice(2);
if (!base || !user || !password || !date || !shot) {
  console.error("usage: node dashboard.mjs <hub URL> <user> <password> <YYYY-MM-DD> <screenshot.png> [drill.png]");
  process.exit(2);
}
const TIMEOUT = 20_000;

const browser = await launch();
const report = { errors: [] };
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    locale: "en-GB",
    timezoneId: "UTC",
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => report.errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/401 \(Unauthorized\)/.test(m.text())) {
      report.errors.push(`console: ${m.text()}`);
    }
  });
  page.on("requestfailed", (r) => report.errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

  await page.goto(`${base}/?date=${date}`);
  report.title = await page.title();

  // Every visible form control has an accessible name.
  report.unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, button, select")]
      .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.textContent.trim()))
      .map((el) => el.id || el.outerHTML.slice(0, 60)));

  // A wrong password is refused with a message; the right one signs in.
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password", { exact: true }).fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#sign-in-message", { hasText: "refused" }).waitFor();
  report.refused = (await page.locator("#sign-in-message").textContent()).trim();
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("body[data-loaded=true]").waitFor();
  // The session is an HttpOnly cookie: nothing the page's script can read.
  report.nothingReadable = await page.evaluate(() =>
    Object.keys(localStorage).length === 0 && document.cookie === "");
  report.cookie = (await context.cookies()).map((c) => ({
    name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite,
  }));

  // Stores: wait until at least one is online (its terminals connect on their own).
  await page.locator('#stores tr[data-online="true"]').first().waitFor();
  report.stores = await page.$$eval("#stores tbody tr", (rows) => rows.map((r) => ({
    id: r.dataset.store,
    online: r.dataset.online === "true",
    connection: r.cells[1].innerText.replace(/\s+/g, " ").trim(),
    lastSync: r.cells[2].innerText.replace(/\s+/g, " ").trim(),
    trouble: r.dataset.trouble,
    pastDue: r.cells[4].innerText.trim(),
  })));
  report.storesPage = (await page.locator("#fleet-page").textContent()).trim();
  // The search narrows the stores table (server-side) to one store.
  await page.getByLabel("Search stores").fill("harbour");
  await page.locator("#stores tbody tr").nth(1).waitFor({ state: "detached" });
  report.searched = await page.$$eval("#stores tbody tr", (rows) => rows.map((r) => r.dataset.store));
  await page.getByLabel("Search stores").fill("");
  await page.locator("#stores tbody tr").nth(1).waitFor();

  // The grid: lists x stores with counts.
  report.grid = await page.$$eval("#grid tbody tr", (rows) => rows.flatMap((r) =>
    [...r.querySelectorAll("td[data-store] button.cell")].map((b) => {
      const count = (k) => Number(b.querySelector(`[data-count="${k}"]`)?.innerText.match(/\d+/)?.[0] ?? 0);
      return {
        list: r.dataset.list,
        store: b.closest("td").dataset.store,
        doc: b.dataset.doc,
        label: b.getAttribute("aria-label"),
        completed: count("completed"),
        in_progress: count("in_progress"),
        not_started: count("not_started"),
        past_due: count("past_due"),
        conflicts: count("conflicts"),
      };
    })));
  report.columns = await page.$$eval("#grid thead th", (ths) => ths.map((t) => t.innerText.trim()));

  // Past due.
  report.pastDue = await page.$$eval("#past-due tbody tr", (rows) => rows.map((r) => ({
    title: r.cells[3].querySelector("button").innerText.trim(),
    store: r.cells[1].innerText.trim(),
    status: r.cells[5].innerText.trim(),
    late: r.cells[0].querySelector(".late").innerText.trim(),
  })));

  // Let relative times settle, then keep the board as the screenshot.
  await page.screenshot({ path: shot, fullPage: true });

  // Drill-down: the grid cell with a conflict (else the first one).
  const target = report.grid.find((c) => c.conflicts > 0) ?? report.grid[0];
  await page.locator(`button.cell[data-doc="${target.doc}"]`).click();
  const dialog = page.getByRole("dialog");
  await dialog.locator("article.task").first().waitFor();
  report.drill = {
    open: await dialog.isVisible(),
    doc: target.doc,
    title: (await dialog.locator("#instance-title").textContent()).trim(),
    meta: (await dialog.locator("#instance-meta").innerText()).trim(),
    tasks: await dialog.locator("article.task").evaluateAll((arts) => arts.map((a) => ({
      title: a.getAttribute("aria-label"),
      status: a.querySelector("h3 .pill").innerText.trim(),
      pastDue: !!a.querySelector("h3 .badge.past-due"),
      conflict: [...a.querySelectorAll(".conflict-box li")].map((li) => li.innerText.replace(/\s+/g, " ").trim()),
      history: [...a.querySelectorAll("table.history tbody tr")].map((tr) => ({
        status: tr.cells[1].innerText.trim(),
        worker: tr.cells[2].innerText.trim(),
        terminal: tr.cells[3].innerText.trim(),
        note: tr.cells[4].innerText.trim(),
      })),
    }))),
  };
  if (drillShot) await page.screenshot({ path: drillShot, fullPage: false });
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  report.drill.closedWithEscape = true;

  // A status read the hub answered before its index caught up (a
  // reconnect storm): the header says how many lists are behind, and the
  // board says so until a read has none behind.
  report.behindHiddenAtFirst = await page.locator("#index-behind").isHidden();
  await page.route("**/api/status/lists*", async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, headers: { ...response.headers(), "status-index-behind": "37" } });
  });
  await page.evaluate(() => refresh());
  await page.locator("#index-behind").waitFor();
  report.behind = (await page.locator("#index-behind").textContent()).trim();
  await page.unroute("**/api/status/lists*");
  await page.evaluate(() => refresh());
  await page.locator("#index-behind").waitFor({ state: "hidden" });
  report.behindClears = true;

  // Signing out ends the session: the sign-in form again, and a reload
  // stays signed out.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#sign-in:not([hidden])").waitFor();
  await page.reload();
  await page.locator("#sign-in:not([hidden])").waitFor();
  report.signedOut = await page.locator("#board").isHidden();
} catch (e) {
  report.failed = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(report.failed ? 1 : 0);
