// The POS screens at five screen sizes, for tests/tests/browser_pos_layout.rs.
//
//   node pos_layout.mjs <agent base URL> <screenshot dir>
//
// At each size: the names, the PIN pad (a wrong PIN first, then the right
// one), a worker's home, "All today", the alerts, a task sheet, and the
// manager's view. Every visible button is measured (see `overflows`);
// a screenshot of each screen goes to the directory. Prints
// `RESULT {errors, overflows, seen}`.
import { launch, watchPosErrors } from "./headless.mjs";

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error("usage: node pos_layout.mjs <agent URL> <screenshot dir>");
  process.exit(2);
}
const TIMEOUT = 20_000;
const SIZES = [[1024, 768], [1280, 800], [1920, 1080], [800, 1280], [390, 844]];

// Every visible button (and the link styled as one) whose content does not
// fit: scrolls inside its box, has text outside its box, or breaks a label
// of one or two words over two lines ("Sign / in").
function overflows() {
  const bad = [];
  const visible = (e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden";
  };
  for (const b of document.querySelectorAll("button, a.pos-op")) {
    if (!visible(b)) continue;
    const label = b.innerText.trim().replace(/\s+/g, " ");
    const box = b.getBoundingClientRect();
    const why = [];
    if (b.scrollWidth > b.clientWidth + 1) why.push(`scrollWidth ${b.scrollWidth} > clientWidth ${b.clientWidth}`);
    if (b.scrollHeight > b.clientHeight + 1) why.push(`scrollHeight ${b.scrollHeight} > clientHeight ${b.clientHeight}`);
    const range = document.createRange();
    range.selectNodeContents(b);
    const text = range.getBoundingClientRect();
    if (text.width > 0 && (text.left < box.left - 1 || text.right > box.right + 1 ||
        text.top < box.top - 1 || text.bottom > box.bottom + 1)) {
      why.push("text outside the button");
    }
    // A short label ("Sign in", "Take it") stays on one line.
    const walk = document.createTreeWalker(b, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const words = n.textContent.trim().split(/\s+/);
      if (!words[0] || words.length > 2) continue;
      const r = document.createRange();
      r.selectNodeContents(n);
      const lines = new Set([...r.getClientRects()].filter((x) => x.width > 0).map((x) => Math.round(x.bottom)));
      if (lines.size > 1) why.push(`${JSON.stringify(n.textContent.trim())} broken over ${lines.size} lines`);
    }
    if (why.length) bad.push(`${JSON.stringify(label)} (${why.join(", ")})`);
  }
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 1) bad.push(`the page is ${page.scrollWidth}px wide on a ${window.innerWidth}px screen`);
  return bad;
}

const browser = await launch();
const report = { errors: [], overflows: [], seen: { sizes: [] } };
let code = 0;
try {
  for (const [width, height] of SIZES) {
    const size = `${width}x${height}`;
    const context = await browser.newContext({
      viewport: { width, height },
      locale: "en-GB",
      timezoneId: "Europe/Berlin",
      hasTouch: true,
    });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    watchPosErrors(page, report, `${size}: `);
    async function check(screen) {
      await page.screenshot({ path: `${shotDir}/${size}-${screen}.png` });
      for (const o of await page.evaluate(overflows)) report.overflows.push(`${size} ${screen}: ${o}`);
    }
    async function pin(worker, digits) {
      await page.locator(`[data-worker="${worker}"]`).click();
      for (const d of digits) await page.locator(`[data-key="${d}"]`).click();
      await check("pin-pad");
      await page.locator("#sign-in").click();
    }

    await page.goto(base + "/");
    await page.locator("[data-worker]").first().waitFor();
    await check("names");
    // A wrong PIN: refused with a toast, the keypad stays; the right PIN
    // next, and the toast goes with the keypad.
    await pin("w-1", "0000");
    const refused = page.locator(".toast.bad", { hasText: "wrong PIN" });
    await refused.waitFor();
    report.seen.wrong_pin_toast = true;
    for (const d of "1234") await page.locator(`[data-key="${d}"]`).click();
    await page.locator("#sign-in").click();
    await page.locator("nav.tabs").waitFor();
    report.seen.toast_after_sign_in = await page.locator("#toast").isVisible();

    await page.locator(".task", { hasText: "Count the till" }).waitFor();
    report.seen.alerts_buttons = await page.locator("button:visible", { hasText: /^\s*Alerts\b/ }).count();
    await check("home");
    await page.locator('[data-tab="all"]').click();
    await page.locator(".task", { hasText: "Switch off the oven" }).waitFor();
    report.seen.bags_assignee = (await page.locator(".task", { hasText: "Restock carrier bags" })
      .locator(".assignee").innerText()).trim();
    report.seen.past_due_row_mark = (await page.locator(".task.late .late-mark").first().innerText()).trim();
    await check("all-today");
    await page.locator("#bell").click();
    const lateRow = page.locator(".task", { hasText: "Check the cold chain log" });
    report.seen.late_text = (await lateRow.locator(".chip", { hasText: / late$/ }).innerText()).trim();
    await check("alerts");
    await page.locator('[data-tab="mine"]').click();
    await page.locator(".task", { hasText: "Count the till" }).click();
    await page.locator(".sheet .pos-op").waitFor();
    await check("task-sheet");
    await page.locator(".sheet .act.muted").click();
    await page.locator(".tab.out").click();

    await pin("m-1", "9999");
    // The manager is told of the conflicts on whatever screen she is on.
    report.seen.manager_banner = (await page.locator("#banner-conflicts").innerText()).trim();
    report.seen.manager_badge = Number(await page.locator("#badge").innerText());
    await check("manager-home");
    await page.locator("#bell").click();
    await page.locator("[data-conflict-alert]").first().waitFor();
    report.seen.manager_conflict_alerts = await page.locator("[data-conflict-alert]").count();
    await check("manager-alerts");
    await page.locator('[data-tab="manager"]').click();
    await page.locator("#new-task-save").waitFor();
    await check("manager");
    report.seen.sizes.push(size);
    await context.close();
  }
} catch (e) {
  report.errors.push(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(report)}`);
process.exit(code);
