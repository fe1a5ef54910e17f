// The web console end to end in a real browser (Debian's chromium through
// playwright-core; nothing is downloaded). Started by tests/console.rs,
// which runs the server (`serve --demo`) and a technician's device:
//
//   CONSOLE_URL=http://127.0.0.1:PORT SHOTS=dir node console.mjs
//
// It talks to the test over stdio, one JSON object per line: it prints
// `@@ {...}` lines (the ticket it created, each check's result) and reads
// commands (what to expect next on the open pages) from stdin. A live
// check passes when both the dispatcher's open ticket page and board show
// the change within LIVE_MS of the device's acknowledged sync.

import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const BASE = process.env.CONSOLE_URL;
const SHOTS = process.env.SHOTS ?? "console-screenshots";
const PW = "fieldsync-demo";
const LIVE_MS = Number(process.env.LIVE_MS ?? 1000);
mkdirSync(SHOTS, { recursive: true });
for (const f of readdirSync(SHOTS)) if (f.startsWith("failed-")) rmSync(join(SHOTS, f));

const say = (o) => console.log("@@ " + JSON.stringify(o));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => JSON.parse((await lines.next()).value);
const pageErrors = [];
const pages = []; // for screenshots when a check fails

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function newPage(browser, name, timezoneId = "UTC") {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, timezoneId });
  const page = await context.newPage();
  pages.push([name, page]);
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  // Script errors only: a refused request is logged by the browser too
  // ("Failed to load resource"), and some are expected (401 → refresh).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`${name} console: ${m.text()}`);
  });
  return page;
}

async function signIn(page, user, password = PW) {
  await page.goto(BASE + "/");
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("form.signin button[type=submit]");
  await page.waitForSelector("header#top:not([hidden])");
  await page.waitForSelector("main :is(h1, #no-office)");
}

async function shot(page, name, fullPage = false) {
  await page.waitForTimeout(300); // charts and images settle
  await page.screenshot({ path: join(SHOTS, name), fullPage });
}

async function navTitles(page) {
  return page.$$eval("#nav a", (as) => as.map((a) => a.textContent));
}

async function download(page, click) {
  const [d] = await Promise.all([page.waitForEvent("download"), click()]);
  return readFileSync(await d.path(), "utf8");
}

async function apiAs(user, password, method, path, body) {
  const login = await fetch(`${BASE}/api/v1/auth/login`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username: user, password }),
  });
  const { access_token } = await login.json();
  const res = await fetch(`${BASE}/api/v1${path}`, {
    method, headers: { Authorization: `Bearer ${access_token}`, "Content-Type": "application/json" },
    body: body && JSON.stringify(body),
  });
  check(res.ok, `${method} ${path} → ${res.status}`);
  return res.status === 204 ? null : res.json();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  // A technician's account sees no office pages, whatever URL it opens.
  // By keyboard alone: the username field has focus, Tab moves on, Enter sends.
  const tech = await newPage(browser, "tom");
  await tech.goto(BASE + "/");
  await tech.waitForSelector("form.signin input[name=username]:focus");
  await tech.keyboard.type("tom");
  await tech.keyboard.press("Tab");
  await tech.keyboard.type(PW);
  await tech.keyboard.press("Enter");
  await tech.waitForSelector("header#top:not([hidden])");
  check((await navTitles(tech)).length === 0, "a technician has no console pages in the menu");
  await tech.waitForSelector("#no-office");
  for (const route of ["board", "office", "reports", "users"]) {
    await tech.goto(`${BASE}/#/${route}`);
    await tech.waitForSelector("#no-office");
  }
  await shot(tech, "console-technician.png");
  say({ step: "technician sees no office pages" });

  // The dispatcher: the board in one tab, a new ticket in another.
  const board = await newPage(browser, "dora board");
  await signIn(board, "dora");
  const doraNav = await navTitles(board);
  check(doraNav.includes("Dispatch") && !doraNav.includes("Users"), `dispatcher menu: ${doraNav}`);
  await board.waitForSelector("#board-list table");
  await shot(board, "console-board.png");

  // The dispatcher's desk is in the customer's zone (UTC+8): times shown and
  // typed are local, stored as UTC.
  const desk = await newPage(browser, "dora ticket", "Asia/Shanghai");
  await signIn(desk, "dora");
  await desk.click("#new-ticket");
  const intake = desk.locator("dialog[open]");
  await intake.locator("input[type=search]").fill("acme");
  await intake.locator(".results button").first().click();
  await intake.locator("select[name=asset_id] option:nth-child(2)").waitFor({ state: "attached" });
  await intake.locator("select[name=asset_id]").selectOption({ index: 1 });
  await intake.locator("textarea[name=fault_description]").fill("Mixer motor stops under load (browser test)");
  await intake.locator("select[name=priority]").selectOption("A");
  await shot(desk, "console-intake.png");
  await intake.locator("button[type=submit]").click();
  await desk.waitForSelector("#ticket-page[data-status=new]");
  const docId = await desk.getAttribute("#ticket-page", "data-doc");
  const ticketNo = (await desk.textContent("#ticket-page h1")).match(/Ticket (\S+)/)[1];

  // Created through the API: the open board shows it without a reload.
  await board.waitForSelector(`tr[data-doc="${docId}"]`, { timeout: LIVE_MS + 1000 });

  await desk.click("#assign");
  await desk.locator("dialog[open] select[name=technician]").selectOption("tom");
  await desk.locator("dialog[open] button[type=submit]").click();
  await desk.waitForSelector("#ticket-page[data-status=assigned]");
  check((await desk.textContent("#ticket-page")).includes("Tom Technician"), "assigned to Tom");
  await desk.click("#appointment");
  const day = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
  await desk.fill("dialog[open] input[name=start]", `${day}T09:00`);
  await desk.fill("dialog[open] input[name=end]", `${day}T11:00`);
  await desk.locator("dialog[open] button[type=submit]").click();
  await desk.waitForFunction(() => !document.querySelector("dialog[open]"));
  await desk.waitForFunction(() => !document.querySelector("#ticket-page").textContent.includes("not set"));
  check((await desk.textContent("#who")).includes("Asia/Shanghai"), "the header names the viewer's zone");
  const stored = await apiAs("dora", PW, "GET", `/tickets/${docId}`);
  check(stored.appointment_start === `${day}T01:00:00Z`, `09:00 in Shanghai is stored as 01:00Z: ${stored.appointment_start}`);
  check(/09:00\s*(AM)?\s*–\s*11:00/.test(await desk.textContent("#ticket-page")), "and shown as 09:00–11:00 there");
  await board.waitForSelector(`tr[data-doc="${docId}"][data-status=assigned]`, { timeout: LIVE_MS + 1000 });
  say({ step: "ticket created and assigned", doc_id: docId, ticket_no: ticketNo });

  // The technician's device works the ticket; each synced step must show
  // on the open pages within LIVE_MS.
  const latencies = [];
  for (;;) {
    const cmd = await next();
    if (cmd.done) break;
    const t0 = Date.now();
    const timeout = LIVE_MS;
    if (cmd.status) {
      await Promise.all([
        desk.waitForSelector(`#ticket-page[data-status="${cmd.status}"]`, { timeout }),
        board.waitForSelector(`tr[data-doc="${docId}"][data-status="${cmd.status}"]`, { timeout }),
      ]);
    }
    if (cmd.text) {
      await desk.waitForFunction((t) => document.querySelector("#ticket-page")?.textContent.includes(t), cmd.text, { timeout });
    }
    if (cmd.image) {
      await desk.waitForFunction((alt) => [...document.querySelectorAll("#ticket-page img")]
        .some((i) => i.alt.startsWith(alt) && i.complete && i.naturalWidth > 0), cmd.image, { timeout });
    }
    const ms = Date.now() - t0;
    latencies.push(ms);
    say({ step: `live: ${cmd.what}`, ms });
  }
  await shot(desk, "console-ticket.png", true);

  // The session ends mid-work: what was typed survives a new sign-in.
  await desk.goto(`${BASE}/#/board`);
  await desk.click("#new-ticket");
  const typed = "Typed before the session ended";
  await desk.locator("dialog[open] textarea[name=fault_description]").fill(typed);
  await desk.locator("dialog[open] input[name=customer_name]").fill("Walk-in customer");
  await desk.locator("dialog[open] input[name=product]").fill("Bench mixer");
  await apiAs("ada", PW, "PUT", "/users/dora/password", { password: "dora-new-password" });
  await desk.locator("dialog[open] button[type=submit]").click();
  await desk.waitForSelector("#reauth[open]");
  await desk.fill("#reauth input[name=password]", "dora-new-password");
  await desk.click("#reauth button[type=submit]");
  await desk.waitForSelector("#ticket-page[data-status=new]");
  check((await desk.textContent("#ticket-page")).includes(typed), "the typed fault was kept across the new sign-in");
  say({ step: "session ended mid-work: signed in again, nothing typed was lost" });

  // Cancel and reopen, each with a reason that lands in the notes.
  await desk.click("#cancel");
  await desk.fill("dialog[open] textarea[name=reason]", "Customer called it off");
  await desk.locator("dialog[open] button[type=submit]").click();
  await desk.waitForSelector("#ticket-page[data-status=cancelled]");
  await desk.click("#reopen");
  await desk.fill("dialog[open] textarea[name=reason]", "Customer called back");
  await desk.locator("dialog[open] button[type=submit]").click();
  await desk.waitForSelector("#ticket-page[data-status=reopened]");
  check((await desk.textContent("#ticket-page")).includes("Customer called back"), "the reason is in the notes");

  // The board filtered by customer, on a tablet-sized screen (this tab's
  // session ended with the password change too: sign in afresh).
  await board.goto("about:blank");
  await signIn(board, "dora", "dora-new-password");
  await board.waitForSelector("#board-list");
  await board.setViewportSize({ width: 834, height: 1112 });
  await board.fill("input[name=customer_name]", "Acme");
  await board.waitForSelector("#customer-options option", { state: "attached" });
  await board.fill("input[name=customer_name]", await board.getAttribute("#customer-options option", "value"));
  await board.dispatchEvent("input[name=customer_name]", "input");
  await board.waitForFunction(() => document.querySelector("input[name=customer_id]").value !== "");
  await board.selectOption("select[name=status]", "");
  await board.click("form.filters button[type=submit]");
  await board.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#board-list tbody tr")];
    return rows.length > 0 && rows.every((r) => r.children[3].textContent.startsWith("Acme"));
  });
  await shot(board, "console-board-tablet.png");
  say({ step: "cancel, reopen, customer filter" });
  await desk.goto(`${BASE}/#/ticket/${docId}`);
  await desk.waitForSelector("#ticket-page");

  // Back office reconciles the job; the dispatcher's page follows live.
  const office = await newPage(browser, "bob");
  await signIn(office, "bob");
  const bobNav = await navTitles(office);
  check(bobNav.includes("Back office") && !bobNav.includes("Users"), `back-office menu: ${bobNav}`);
  await office.goto(`${BASE}/#/users`);
  await office.waitForSelector("text=not available to the back office role");
  // A crafted link cannot make the page call another API path.
  const exportsBefore = (await apiAs("bob", PW, "GET", "/reconciliation/exports")).items.length;
  await office.goto(`${BASE}/#/ticket/..%2Freconciliation%2Fexport%3Ffrom%3D2021-01-01%26to%3D2021-12-31%26x%3D`);
  await office.waitForSelector("text=not available to the back office role");
  check((await apiAs("bob", PW, "GET", "/reconciliation/exports")).items.length === exportsBefore, "no export made by a crafted link");
  await office.goto(`${BASE}/#/office`);
  const review = office.locator(`article.review[data-doc="${docId}"]`);
  await review.waitFor();
  await shot(office, "console-back-office.png");
  await review.locator("button.approve").click();
  const note = office.locator("dialog[open] textarea[name=note]");
  await note.fill("Checked against the signed job sheet (browser test)");
  await office.locator("dialog[open] button[type=submit]").click();
  await review.waitFor({ state: "detached" });
  await desk.waitForSelector("#ticket-page[data-status=reconciled]", { timeout: LIVE_MS + 1000 });
  // Locked now: the dispatcher is offered nothing the API would refuse.
  check(await desk.locator("#ticket-page .page-head button").count() === 0, "no actions on a reconciled ticket");
  const csv = await download(office, () => office.click("form[aria-label='Export reconciled jobs'] button[type=submit]"));
  check(csv.includes(ticketNo), "the export has the reconciled job");
  say({ step: "reconciled and exported", csv_lines: csv.trim().split("\n").length });

  // A manager opens the report; its CSV downloads.
  const manager = await newPage(browser, "mia");
  await signIn(manager, "mia");
  await manager.goto(`${BASE}/#/reports`);
  await manager.waitForSelector("#kpi-tiles .tile");
  await manager.waitForFunction(() => document.querySelectorAll("canvas").length > 0 && window.Chart && Object.keys(window.Chart.instances).length > 0);
  await shot(manager, "console-reports.png", true);
  const report = await download(manager, () => manager.click("#report-csv"));
  check(report.split("\n").length > 3, "the report CSV has lines");
  say({ step: "manager report", csv_lines: report.trim().split("\n").length });

  // The admin pages, and the customer archive.
  const admin = await newPage(browser, "ada");
  await signIn(admin, "ada");
  await admin.goto(`${BASE}/#/users`);
  await admin.waitForSelector("#users table");
  await shot(admin, "console-users.png");
  await admin.goto(`${BASE}/#/devices`);
  await admin.waitForSelector("text=tom-tablet");
  await admin.goto(`${BASE}/#/audit`);
  await admin.waitForSelector("main table");
  await admin.goto(`${BASE}/#/parts`);
  await admin.waitForSelector("text=Mixer motor 400 W");
  await shot(admin, "console-parts.png");
  await admin.goto(`${BASE}/#/customers`);
  await admin.fill("input[name=q]", "acme");
  await admin.click("form[role=search] button[type=submit]");
  await admin.locator("main table a").first().click();
  await admin.waitForSelector("text=Service history");
  check((await admin.textContent("main")).includes(ticketNo), "the customer's history lists the new ticket");
  await shot(admin, "console-customer.png");

  check(pageErrors.length === 0, `no script errors in the pages: ${pageErrors.join(" | ")}`);
  say({ done: true, live_ms: latencies });
} catch (e) {
  for (const [name, page] of pages) {
    await page.screenshot({ path: join(SHOTS, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
  }
  say({ error: String(e?.stack || e), page_errors: pageErrors, screenshots: `${SHOTS}/failed-*.png` });
  process.exitCode = 1;
} finally {
  await browser.close();
}
// stdin (the test's commands) would keep node running.
process.exit();
