// Drives kfcn's exported page in the system's Chromium (playwright-core, no browser download):
//   node web/test/drive_page.mjs URL OUTPUT_DIR [--screenshot STEM] [--repeat N] IMAGE...
// For each image: picks it in the page (N times: `milliseconds` lists each prediction's time),
// waits until the page is done or refuses it, and writes
// OUTPUT_DIR/<stem>.json (the page's state, message, count and time texts), <stem>.f32 (the
// probabilities or density the page computed, height x width x channels float32) and the file
// behind the "download" button. tests/browser/test_web_page.py runs it and checks the numbers.
import {mkdirSync, writeFileSync} from "node:fs";
import {basename, join} from "node:path";
import {chromium} from "playwright-core";

const [url, output, ...rest] = process.argv.slice(2);
let screenshot = null;
let repeat = 1;
const images = [];
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--screenshot") screenshot = rest[++i];
  else if (rest[i] === "--repeat") repeat = Number(rest[++i]);
  else images.push(rest[i]);
}
mkdirSync(output, {recursive: true});
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({viewport: {width: 1100, height: 900}, acceptDownloads: true});
  const logs = [];
  page.on("console", (message) => logs.push(message.text()));
  page.on("pageerror", (error) => logs.push(`page error: ${error.message}`));
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  await page.goto(url);
  await page.waitForFunction(() => window.kfcn && window.kfcn.state !== "loading", null, {timeout: 120000});
  const loaded = await page.evaluate(() => window.kfcn.state);
  if (loaded !== "ready") throw new Error(`the page did not load: ${await page.textContent("#status")}\n${logs.join("\n")}`);
  for (const image of images) {
    const stem = basename(image).replace(/\.[^.]*$/, "");
    const milliseconds = [];
    for (let time = 0; time < repeat; time++) {
      await page.evaluate(() => { window.kfcn.state = "picking"; });
      await page.setInputFiles("#file", []);
      await page.setInputFiles("#file", image);
      await page.waitForFunction(() => ["done", "refused", "error"].includes(window.kfcn.state), null, {timeout: 300000});
      milliseconds.push(await page.evaluate(() => window.kfcn.result && window.kfcn.result.milliseconds));
    }
    const report = await page.evaluate(() => {
      const {state, message, result} = window.kfcn;
      const summary = result && {...result, values: undefined};
      return {state, message, result: summary, count: document.getElementById("count").textContent,
        time: document.getElementById("time").textContent};
    });
    report.milliseconds = milliseconds;
    if (report.state === "done") {
      const base64 = await page.evaluate(() => {
        const bytes = new Uint8Array(window.kfcn.result.values.buffer);
        let text = "";
        for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(text);
      });
      writeFileSync(join(output, `${stem}.f32`), Buffer.from(base64, "base64"));
      const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
      report.download = download.suggestedFilename();
      await download.saveAs(join(output, report.download));
      if (screenshot === stem) await page.screenshot({path: join(output, `${stem}_page.png`), fullPage: true});
    }
    writeFileSync(join(output, `${stem}.json`), JSON.stringify(report, null, 2));
  }
  const origin = new URL(url).origin;
  const outside = requests.filter((address) => !address.startsWith(origin) && !address.startsWith("blob:") && !address.startsWith("data:"));
  writeFileSync(join(output, "requests.json"), JSON.stringify({outside, count: requests.length, logs}, null, 2));
} finally {
  await browser.close();
}
