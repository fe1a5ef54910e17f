// Screenshots of the embedded API reference (/api/docs) for the README.
//
//   node api-reference.mjs http://127.0.0.1:3030 ../../docs/screenshots
//
// Drives Debian's chromium (CHROMIUM, default /usr/bin/chromium) through
// playwright-core; nothing is downloaded. The server must be running
// (`fieldsync serve --demo`).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base = "http://127.0.0.1:3030", out = "."] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${base}/api/docs`, { waitUntil: "networkidle" });
  await page.waitForSelector(".opblock-tag", { timeout: 15000 });
  await page.screenshot({ path: join(out, "api-reference.png") });
  // One operation opened: its parameters (paging, If-Match) and responses.
  const op = page.locator(`[id$="-records_update_customer"]`).first();
  await op.locator(".opblock-summary").click();
  await op.locator(".parameters").waitFor({ timeout: 15000 });
  await op.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(out, "api-reference-operation.png") });
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
}
