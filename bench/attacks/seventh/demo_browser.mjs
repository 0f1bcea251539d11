// Opens the demo page (served by fakerelay.py over plain http on 127.0.0.1) in headless
// Chromium and reports page errors, whether injected HTML ran, and the HUD.
//   node demo_browser.mjs PORT SECONDS
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const require = createRequire(new URL("../../../clients/web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [port, seconds] = [Number(process.argv[2] ?? 7801), Number(process.argv[3] ?? 10)];
const profile = mkdtempSync(join(tmpdir(), "seventh-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
const killer = setTimeout(() => process.exit(3), (seconds + 20) * 1000);
try {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e).slice(0, 160)));
  await page.goto(`http://127.0.0.1:${port}/demo/?room=r`);
  const timeline = [];
  for (let i = 0; i < seconds; i++) {
    await page.waitForTimeout(1000);
    const s = await page.evaluate(() => {
      const d = globalThis.demo?.snapshot();
      return { xss: globalThis.__xss ?? 0, status: document.getElementById("status")?.textContent, predicted: d?.predicted, lastSeqSent: d?.lastSeqSent, lastSeqApplied: d?.lastSeqApplied, imgs: document.querySelectorAll("img").length };
    });
    timeline.push({ t: i + 1, errors: errors.length, ...s });
  }
  console.log(JSON.stringify({ timeline: timeline.filter((_, i) => i % 2 === 1 || i === timeline.length - 1), firstErrors: [...new Set(errors)].slice(0, 3), totalErrors: errors.length }));
} finally {
  clearTimeout(killer);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
