// Drives the console in real headless Chromium (Debian's /usr/bin/chromium) with
// playwright-core; run by browser.rs. Prints one JSON line per step to stdout; exits non-zero
// (with the reason on stderr) at the first failure.
// Usage: node browser.js <playwright-core dir> <base url> <console token> <webhook token> <screenshot dir>
"use strict";
const path = require("path");
const [pwDir, base, token, webhookToken, shots] = process.argv.slice(2);
const { chromium } = require(path.join(pwDir, "node_modules", "playwright-core"));

const step = (name, extra) => console.log(JSON.stringify({ step: name, ...(extra || {}) }));

async function postAlert(rule, priority, namespace, user) {
  const uuid = require("crypto").randomUUID();
  const time = new Date().toISOString().replace("Z", "000000Z");
  const alert = {
    uuid, time, rule, priority, source: "k8s_audit", hostname: "kaudit-browser-test",
    output: `${time}: ${priority} ${rule} (user=${user} ns=${namespace})`,
    output_fields: { "ka.target.namespace": namespace, "ka.user.name": user, "ka.verb": "create",
      "ka.target.resource": "pods", "ka.target.subresource": "exec" },
    tags: ["k8s", "browser"],
  };
  const r = await fetch(base + "/", { method: "POST", body: JSON.stringify(alert),
    headers: { "content-type": "application/json", authorization: "Bearer " + webhookToken } });
  if (r.status !== 200) throw new Error("POST / answered " + r.status);
  return uuid;
}

(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.setDefaultTimeout(30000);
  try {
    await page.goto(base + "/ui/");
    await page.locator("#token").waitFor();
    step("login shown");
    await page.fill("#token", token);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.getElementById("live-state")?.textContent === "live");
    step("feed live");

    const rule = "Exec Or Attach Into Pod";
    const user = "mallory-" + Date.now();
    const uuid = await postAlert(rule, "Notice", "payments", user);
    await page.locator(`#alerts tr[data-uuid="${uuid}"]`).waitFor();
    step("live alert shown", { uuid });
    await page.screenshot({ path: path.join(shots, "feed.png"), fullPage: false });

    await page.fill("#f-rule", rule);
    await page.click("form.filters button[type=submit]");
    await page.waitForURL((u) => new URL(u).searchParams.get("rule") === rule);
    await page.waitForFunction((r) => {
      const rows = [...document.querySelectorAll("#alerts tbody tr")];
      return rows.length >= 1 && rows.every((tr) => tr.dataset.rule === r);
    }, rule);
    step("filtered by rule", { url: page.url() });

    await page.click(`#alerts tr[data-uuid="${uuid}"] a`);
    await page.waitForURL("**/ui/alerts/" + uuid);
    for (let i = 0; ; i++) {
      if (await page.locator('#deliveries tr[data-sink="archive"]').count()) break;
      if (i > 100) throw new Error("no delivery shown on the alert page");
      await page.waitForTimeout(200);
      await page.reload();
    }
    const text = await page.locator("main").innerText();
    for (const want of [rule, user, "payments", "delivered", "exec"]) {
      if (!text.includes(want)) throw new Error("alert page lacks " + want);
    }
    step("alert page", { url: page.url() });
    await page.screenshot({ path: path.join(shots, "alert.png"), fullPage: true });

    await page.click('nav a[data-page="sinks"]');
    await page.locator('#sinks tr[data-sink="console-store"]').waitFor();
    await page.locator('#sinks tr[data-sink="archive"]').waitFor();
    step("sinks page");
    await page.screenshot({ path: path.join(shots, "sinks.png"), fullPage: true });

    await page.click('nav a[data-page="rules"]');
    await page.locator("#rules tbody tr").first().waitFor();
    step("rules page");
    await page.screenshot({ path: path.join(shots, "rules.png"), fullPage: false });

    // Keyboard: the skip link is the first stop and moves focus to the content.
    await page.goto(base + "/ui/");
    await page.keyboard.press("Tab");
    const first = await page.evaluate(() => document.activeElement?.textContent);
    if (first !== "Skip to content") throw new Error("first tab stop is " + first);
    step("keyboard");
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
  } catch (e) {
    console.error(String(e && e.stack || e));
    await page.screenshot({ path: path.join(require("os").tmpdir(), "kaudit-console-failure.png") }).catch(() => {});
    await browser.close();
    process.exit(1);
  }
  await browser.close();
})();
