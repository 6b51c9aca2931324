// The HQ dashboard's roll-up, past due by list and authoring in headless
// Chromium; prints what it saw as one JSON object on stdout.
// tests/tests/browser_dashboard_rollup.rs sets up the hub and asserts on it.
//
//   node dashboard_rollup.mjs <hub base URL> <editor> <viewer> <password> <YYYY-MM-DD>
//
// Steps, as the editor: read the roll-up by store group, drill down to a
// group's stores and to a store's lists, and back; expand a list in "past
// due by list"; read the report link; create a recurring list for a store
// group, edit it, and publish a one-off list to a store (every write with
// the session's CSRF token). Then as the viewer: no authoring controls.
import { launch } from "./headless.mjs";

const [base, editor, viewer, password, today] = process.argv.slice(2);
if (!base || !editor || !viewer || !password || !today) {
  console.error("usage: node dashboard_rollup.mjs <hub URL> <editor> <viewer> <password> <YYYY-MM-DD>");
  process.exit(2);
}

const browser = await launch();
const report = { errors: [], writes: [] };
const crumbs = async (page) => (await page.locator("#rollup-crumbs").innerText()).replace(/\s+/g, " ").trim();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-GB", timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (e) => report.errors.push(`page error: ${e.message}`));
  page.on("request", (r) => {
    if (r.method() !== "GET" && new URL(r.url()).pathname.startsWith("/api/") && !r.url().endsWith("/api/session")) {
      report.writes.push({ method: r.method(), path: new URL(r.url()).pathname, csrf: !!r.headers()["x-csrf-token"] });
    }
  });
  const signIn = async (user) => {
    await page.goto(`${base}/`);
    await page.getByLabel("User").fill(user);
    await page.getByLabel("Password", { exact: true }).fill(password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("body[data-loaded=true]").waitFor();
  };
  await signIn(editor);

  // The roll-up: store groups, most behind first.
  const rollup = page.locator("#rollup");
  await rollup.locator("tbody tr[data-group]").first().waitFor();
  const rows = (sel) => rollup.locator(`tbody tr${sel}`).evaluateAll((trs) => trs.map((tr) => ({
    key: tr.dataset.group ?? tr.dataset.store ?? tr.dataset.list,
    name: tr.querySelector("th").firstChild.textContent.trim(),
    share: tr.querySelector("td.share").dataset.share,
    pastDue: tr.querySelector('[data-count="past_due"]').innerText.trim(),
  })));
  report.groups = await rows("[data-group]");
  report.head = await rollup.locator("thead th").allInnerTexts();

  // Drill down: a group's stores, then a store's lists, then back.
  await rollup.getByRole("button", { name: "region-north" }).click();
  await rollup.locator("tbody tr[data-store]").first().waitFor();
  report.stores = await rows("[data-store]");
  report.crumbsAtStores = await crumbs(page);
  await rollup.getByRole("button", { name: "North One" }).click();
  await rollup.locator("tbody tr[data-list]").first().waitFor();
  report.lists = await rows("[data-list]");
  report.crumbsAtLists = await crumbs(page);
  await page.locator("#rollup-crumbs").getByRole("button", { name: "All store groups" }).click();
  await rollup.locator("tbody tr[data-group]").first().waitFor();
  report.backAtGroups = (await rows("[data-group]")).length;
  report.reportLink = await page.locator("#report-csv").getAttribute("href");

  // Past due by list: counts, and a list expands to its stores.
  const pd = page.locator("#past-due-lists");
  report.pastDueLists = await pd.locator("tbody tr[data-list]").evaluateAll((trs) => trs.map((tr) => ({
    list: tr.dataset.list, tasks: tr.cells[1].innerText.trim(), stores: tr.cells[2].innerText.trim(),
  })));
  await pd.locator('tr[data-list="Delivery"] button').click();
  await pd.locator('tr[data-list-stores="Delivery"] tbody tr').first().waitFor();
  report.delivery = await pd.locator('tr[data-list-stores="Delivery"] tbody tr').evaluateAll((trs) => trs.map((tr) => ({
    store: tr.dataset.store,
    due: tr.querySelector(".due-local").innerText.trim(),
  })));

  // Authoring: a recurring list for a store group.
  report.authoringShown = await page.locator("#authoring").isVisible();
  await page.getByLabel("Recurring list", { exact: true }).check();
  await page.locator("#author-name").fill("Daily count");
  await page.getByLabel("Repeats").selectOption("FREQ=DAILY");
  await page.locator("#author-time").fill("06:00");
  await page.locator("#author-start").fill(today);
  await page.locator("#author-tasks").fill("07:00 Count the safe\nCheck the fridges");
  await page.getByLabel("Store groups").selectOption(["region-south"]);
  await page.getByRole("button", { name: "Create the recurring list" }).click();
  await page.locator("#author-message", { hasText: "Saved" }).waitFor();
  report.created = (await page.locator("#author-message").textContent()).trim();
  // Edited: one more task, saved as a new revision.
  await page.locator("#author-tasks").fill("07:00 Count the safe\nCheck the fridges\nEmpty the bins");
  await page.getByRole("button", { name: "Save the recurring list" }).click();
  await page.locator("#author-message", { hasText: "revision 2" }).waitFor();
  report.edited = (await page.locator("#author-message").textContent()).trim();
  // A one-off list for one store.
  await page.getByLabel("One-off list", { exact: false }).check();
  await page.locator("#author-name").fill("Stock take");
  await page.locator("#author-date").fill(today);
  await page.locator("#author-tasks").fill("Count the shelves");
  await page.locator("#author-groups").selectOption([]);
  await page.getByLabel("Stores (ids").fill("n2");
  await page.getByRole("button", { name: "Publish the list" }).click();
  await page.locator("#author-message", { hasText: "Published" }).waitFor();
  report.published = (await page.locator("#author-message").textContent()).trim();

  // The viewer gets no authoring controls.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#sign-in:not([hidden])").waitFor();
  await signIn(viewer);
  report.viewerSeesAuthoring = await page.locator("#authoring").isVisible();
  report.viewerSeesRollup = await rollup.locator("tbody tr[data-group]").count();
} catch (e) {
  report.failed = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(report.failed ? 1 : 0);
