// The live page in a real browser (Debian's chromium, headless, driven by playwright-core): `sana-sprint serve` with
// the shipped model on a free port; the page opens, strokes are drawn with the mouse, and the test checks that images
// arrive, that the image changes with the drawing, that no frame ever waited behind another (at most one request in
// flight), and that the server stops cleanly on SIGTERM. A screenshot is kept for people to look at.
//
// Usage: node live_page.test.mjs SANA_SPRINT_BINARY ARTIFACT_DIR
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [binary, artifacts] = process.argv.slice(2);
if (!binary || !artifacts) {
  console.error("usage: node live_page.test.mjs SANA_SPRINT_BINARY ARTIFACT_DIR");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

function fail(message) {
  console.error("FAIL: " + message);
  process.exitCode = 1;
  throw new Error(message);
}

function startServer() {
  return new Promise((resolve, reject) => {
    const proc = spawn(binary, ["-t", "2", "serve", "--port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    const timer = setTimeout(() => reject(new Error("the server did not start in 60 s:\n" + log)), 60000);
    proc.stderr.on("data", (chunk) => {
      log += chunk;
      const m = log.match(/serving on http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]), log: () => log });
      }
    });
    proc.on("exit", (code) => reject(new Error("the server exited (" + code + "):\n" + log)));
  });
}

// A checksum of the result image's pixels, read back through a canvas.
const imageChecksum = () => {
  const img = document.getElementById("result");
  if (!img.complete || !img.naturalWidth) return null;
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0;
  return h;
};

async function settled(page, minReceived) {
  await page.waitForFunction(
    (n) => window.sanaLive.received >= n && window.sanaLive.inFlight === 0 &&
           window.sanaLive.version === window.sanaLive.sentVersion,
    minReceived, { timeout: 60000, polling: 50 });
  await page.waitForFunction(() => document.getElementById("result").complete, null, { timeout: 10000 });
}

const server = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(`http://127.0.0.1:${server.port}/`);
  await settled(page, 1);  // the blank canvas' frame
  const before = await page.evaluate(imageChecksum);
  if (before === null) fail("no image after the first frame");

  // Draw a circle with the mouse, as a user would: centred at (0.6, 0.4) of the canvas, of a size the shapes model
  // knows (its objects are up to 0.18 of the image in radius).
  const box = await (await page.$("#canvas")).boundingBox();
  const cx = box.x + 0.6 * box.width, cy = box.y + 0.4 * box.height, r = 0.15 * box.width;
  await page.mouse.move(cx + r, cy);
  await page.mouse.down();
  for (let a = 0; a <= 2 * Math.PI + 0.01; a += Math.PI / 24)
    await page.mouse.move(cx + r * Math.cos(a), cy + r * Math.sin(a));
  await page.mouse.up();
  await settled(page, 2);
  const after = await page.evaluate(imageChecksum);
  // Where the model drew: the centroid of the result's coloured (saturated) pixels, as a fraction of the image.
  const centroid = await page.evaluate(() => {
    const img = document.getElementById("result");
    const c = document.createElement("canvas");
    c.width = img.naturalWidth, c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sx = 0, sy = 0, n = 0;
    for (let y = 0; y < c.height; y++)
      for (let x = 0; x < c.width; x++) {
        const i = 4 * (y * c.width + x), r = d[i], gg = d[i + 1], b = d[i + 2];
        if (Math.max(r, gg, b) - Math.min(r, gg, b) > 80) { sx += x; sy += y; n++; }
      }
    return n ? [sx / n / c.width, sy / n / c.height] : null;
  });
  const stats = await page.evaluate(() => ({ ...window.sanaLive }));
  await page.screenshot({ path: path.join(artifacts, "live_page.png") });
  console.log("frames sent " + stats.sent + ", received " + stats.received + ", errors " + stats.errors +
              ", most in flight " + stats.maxInFlight + ", last latency " + stats.lastLatencyMs + " ms");
  if (stats.errors !== 0) fail("the page reported " + stats.errors + " failed frames: " +
                               await page.textContent("#error"));
  if (stats.maxInFlight > 1) fail("a frame was sent while another was in flight (" + stats.maxInFlight + ")");
  if (after === before) fail("the image did not change with the drawing");
  // While the pen moves, frames are previews (the shipped models have a tiny decoder); the stroke's end is decoded
  // in full, and that is the picture left on the page.
  console.log("decoders of the frames: " + JSON.stringify(stats.decoders));
  if (!stats.decoders.tiny) fail("no frame drawn during the stroke was a tiny-decoder preview");
  if (stats.lastDecoder !== "full") fail("the last frame, after the stroke, was not fully decoded: " + stats.lastDecoder);
  console.log("the model drew at " + JSON.stringify(centroid) + ", the circle is at [0.6, 0.4]");
  if (!centroid || Math.hypot(centroid[0] - 0.6, centroid[1] - 0.4) > 0.15)
    fail("the image does not follow the drawing: its object is at " + JSON.stringify(centroid));
  if (consoleErrors.length) fail("page errors: " + consoleErrors.join("; "));

  // Latency as the page sees it: 30 more frames, one at a time (each a new seed, fully decoded). The medians of the
  // round trip (fetch to the last byte) and of the server's own time are printed and kept in live_latency.json for
  // docs/PERFORMANCE.md; the target (round trip <= 1.2x the server's) is a measurement, not a pass/fail check here.
  await page.evaluate(() => { window.sanaLive.roundTripMs.length = 0; window.sanaLive.serverMs.length = 0; });
  for (let i = 0; i < 30; i++) {
    const before = await page.evaluate(() => window.sanaLive.received);
    await page.fill("#seed", String(100 + i));
    await settled(page, before + 1);
  }
  const times = await page.evaluate(() => ({ roundTrip: window.sanaLive.roundTripMs, server: window.sanaLive.serverMs }));
  const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  if (times.roundTrip.length < 30) fail("only " + times.roundTrip.length + " of 30 latency frames came back");
  const latency = { frames: times.roundTrip.length, round_trip_p50_ms: median(times.roundTrip),
                    server_p50_ms: median(times.server) };
  latency.ratio = latency.round_trip_p50_ms / Math.max(1, latency.server_p50_ms);
  writeFileSync(path.join(artifacts, "live_latency.json"), JSON.stringify(latency, null, 1) + "\n");
  console.log("latency in the browser: round trip p50 " + latency.round_trip_p50_ms + " ms, server p50 " +
              latency.server_p50_ms + " ms, ratio " + latency.ratio.toFixed(2));
} finally {
  await browser.close();
  const exited = new Promise((resolve) => server.proc.on("exit", (code, sig) => resolve([code, sig])));
  server.proc.kill("SIGTERM");
  const [code, sig] = await exited;
  if (code !== 0) {
    console.error(server.log());
    fail("the server exited with " + code + " (" + sig + ") on SIGTERM, expected 0");
  }
}
console.log("PASS: the live page drew with the model");
