// The worker flow in German, for tests/tests/browser_pos_german.rs.
//
//   node pos_german.mjs <agent base URL> <screenshot dir>
//
// The store's locale is de-DE and its zone is not the browser's (the
// browser runs in Los Angeles, in English). Ana signs in on the German
// keypad, sees her tasks with German due texts in the store's time, the
// alerts with German lateness, completes one, and finds no English word
// on any screen. Then she switches to English for herself: it stays hers
// after signing out and in, while Mia still gets the store's German.
// Prints `RESULT {errors, seen}`.
import { launch, signIn, watchPosErrors } from "./headless.mjs";

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error("usage: node pos_german.mjs <agent URL> <screenshot dir>");
  process.exit(2);
}
const TIMEOUT = 20_000;

const browser = await launch();
const report = { errors: [], seen: {}, english: [] };
let code = 0;
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: "en-US",
    timezoneId: "America/Los_Angeles",
    hasTouch: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watchPosErrors(page, report);
  const [en, de] = await Promise.all(["en", "de"].map((l) => fetch(`${base}/i18n/${l}.json`).then((r) => r.json())));
  // Fixed parts of English texts German replaces: none may be on screen.
  const englishBits = new Set();
  for (const [k, v] of Object.entries(en)) {
    if (v === de[k]) continue;
    for (const bit of v.split(/\{\w+\}/)) if (bit.trim().length >= 6) englishBits.add(bit.trim());
  }
  const noEnglish = async (screen) => {
    const text = await page.locator("body").innerText();
    for (const bit of englishBits) if (text.includes(bit)) report.english.push(`${screen}: ${JSON.stringify(bit)}`);
  };
  const row = (title) => page.locator("#main .task", { hasText: title });

  await page.goto(base + "/");
  await page.locator("h1").waitFor();
  report.seen.sign_in_heading = (await page.locator("h1").innerText()).trim();
  report.seen.html_lang = await page.evaluate(() => document.documentElement.lang);
  await noEnglish("names");
  await page.locator('[data-worker="w-1"]').click();
  report.seen.keypad_go = (await page.locator("#sign-in").innerText()).trim();
  await noEnglish("keypad");
  for (const d of "0000") await page.locator(`[data-key="${d}"]`).click();
  await page.locator("#sign-in").click();
  report.seen.wrong_pin = (await page.locator(".toast.bad", { hasText: "PIN" }).innerText()).trim();
  for (const d of "1234") await page.locator(`[data-key="${d}"]`).click();
  await page.locator("#sign-in").click();
  await row("Kühlkette prüfen").waitFor();
  report.seen.tabs = await page.locator(".tabs .tab").evaluateAll((els) => els.map((e) => e.innerText.trim()));
  report.seen.rows = await page.locator("#main .task").evaluateAll((els) => els.map((e) => ({
    due: e.querySelector(".due").firstChild.textContent,
    title: e.querySelector(".title").firstChild.textContent,
    mark: (e.querySelector(".late-mark") || {}).textContent || null,
    status: e.querySelector(".chip").textContent,
  })));
  report.seen.tiles = await page.locator(".tile").evaluateAll((els) => els.map((e) => e.innerText.replace(/\s+/g, " ").trim()));
  await page.locator("#sync-text", { hasText: "letzter Abgleich" }).waitFor();
  report.seen.sync = (await page.locator("#sync-text").innerText()).trim();
  await noEnglish("home");
  await page.screenshot({ path: `${shotDir}/pos-de-home.png` });

  await page.locator("#bell").click();
  await page.locator("h2", { hasText: "Überfällig" }).waitFor();
  report.seen.alert_chips = await page.locator("#main .task .chip").evaluateAll((els) => els.map((e) => e.textContent));
  await noEnglish("alerts");

  await page.locator('[data-tab="mine"]').click();
  await row("Kasse zählen").click();
  await page.locator("#modal .sheet").waitFor();
  report.seen.sheet_meta = (await page.locator("#modal .sheet .meta").first().innerText()).trim();
  await noEnglish("sheet");
  await page.screenshot({ path: `${shotDir}/pos-de-sheet.png` });
  await page.locator('#modal [data-action="completed"]').click();
  const said = page.locator("#toast:not([hidden]):not(.bad)");
  await said.waitFor();
  report.seen.saved_toast = (await said.innerText()).trim();
  await row("Kasse zählen").locator(".chip", { hasText: "Erledigt" }).waitFor();
  report.seen.completed_chip = (await row("Kasse zählen").locator(".chip").innerText()).trim();

  // Ana picks English for herself; it stays hers on this terminal.
  await page.locator("#lang").selectOption("en");
  await page.locator('[data-tab="mine"]', { hasText: "My tasks" }).waitFor();
  report.seen.english_tab = (await page.locator('[data-tab="mine"]').innerText()).trim();
  await page.locator(".tab.out").click();
  report.seen.signed_out_heading = (await page.locator("h1").innerText()).trim();
  await signIn(page, "w-1", "1234");
  report.seen.english_again = (await page.locator('[data-tab="mine"]').innerText()).trim();
  await page.locator(".tab.out").click();
  await signIn(page, "m-1", "9999");
  report.seen.manager_tab = (await page.locator('[data-tab="mine"]').innerText()).trim();
} catch (e) {
  report.errors.push(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(report)}`);
process.exit(code);
