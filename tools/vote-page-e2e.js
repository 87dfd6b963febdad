// Drives the voting page in headless Chromium (Debian's /usr/bin/chromium) with playwright-core,
// for node/tests/vote_page.rs. The page gets an injected EIP-1193 wallet (window.ethereum) that
// signs with ethers.js, as a browser wallet extension would.
//
// Input on stdin: {"url", "key", "proposal", "choice", "screenshot", "wallet", "ended"}; `wallet` is
// "injected" (default) or "dev" (no window.ethereum: the devnet wallet of the page signs with the
// member key the node offers, chosen by `key`'s address). Prints "voted <power>"
// once its own vote shows in the tally, then waits for the tally to change again (another
// member's vote arriving over the subscription), reads the member's voting power shown on the
// proposal, the outcome shown on the `ended` one and the vote reasons on the `mirrored` one,
// creates a proposal with the page's form
// (signed in the wallet), and prints the final JSON.
const { chromium } = require("playwright-core");
const { Wallet } = require("ethers");

let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => run(JSON.parse(input)).catch((e) => { console.error(e); process.exit(1); }));

async function run({ url, key, proposal, choice, screenshot, wallet: mode, ended, mirrored }) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const wallet = new Wallet(key);
    if (mode !== "dev") await injectWallet(page, wallet);
    await page.goto(`${url}/vote`);
    const power = `[data-proposal="${proposal}"] [data-role=power][data-choice="${choice}"]`;
    await page.waitForSelector(power);
    const before = await page.textContent(power);
    await page.click("#connect");
    if (mode === "dev") {
      await page.waitForSelector("#devkeys:not([hidden])");
      const value = await page.$eval("#devkeys", (s, address) =>
        [...s.options].find((o) => o.textContent.toLowerCase().endsWith(address.toLowerCase())).value, wallet.address);
      await page.selectOption("#devkeys", value);
    }
    await vote(page, wallet, proposal, choice, power, before, screenshot, ended, mirrored);
  } finally {
    await browser.close();
  }
}

async function injectWallet(page, wallet) {
    await page.exposeFunction("__walletSign", async (typedJson) => {
      const t = JSON.parse(typedJson);
      const types = { ...t.types };
      delete types.EIP712Domain;
      return wallet.signTypedData(t.domain, types, t.message);
    });
    await page.addInitScript((address) => {
      window.ethereum = {
        request: async ({ method, params }) => {
          if (method === "eth_requestAccounts") return [address];
          if (method === "eth_signTypedData_v4") return window.__walletSign(params[1]);
          throw new Error(`unsupported method ${method}`);
        },
      };
    }, wallet.address);
}

async function vote(page, wallet, proposal, choice, power, before, screenshot, ended, mirrored) {
    await page.waitForFunction((a) => document.getElementById("who").textContent === a, wallet.address.toLowerCase());
    await page.click(`[data-proposal="${proposal}"] button[data-vote="${choice}"]`);
    await page.waitForFunction(([sel, b]) => {
      const el = document.querySelector(sel);
      return el && el.textContent !== b;
    }, [power, before], { timeout: 20000 });
    const mine = await page.textContent(power);
    const status = await page.textContent("#status");
    process.stdout.write(`voted ${mine}\n`);
    // Another member votes through the API: the page must show it without a reload.
    await page.waitForFunction(([sel, m]) => {
      const el = document.querySelector(sel);
      return el && el.textContent !== m;
    }, [power, mine], { timeout: 20000 });
    const live = await page.textContent(power);
    // The connected member's power on the proposal.
    const myPowerSel = `[data-proposal="${proposal}"] [data-role=my-power]`;
    await page.waitForFunction((sel) => {
      const el = document.querySelector(sel);
      return el && /\d/.test(el.textContent);
    }, myPowerSel, { timeout: 20000 });
    const myPower = await page.textContent(myPowerSel);
    // A past proposal shows what it came to (its state moves while the page is open).
    const outcomeSel = `[data-proposal="${ended}"] [data-role=outcome]`;
    await page.waitForSelector(outcomeSel, { timeout: 20000 });
    const outcome = await page.textContent(outcomeSel);
    // A chain vote's reason, on the proposal mirrored from its chain.
    const reasonsSel = `[data-proposal="${mirrored}"] [data-role=reasons]`;
    await page.waitForSelector(reasonsSel, { timeout: 20000 });
    const reasons = await page.textContent(reasonsSel);
    // A new proposal from the page's form, signed in the wallet.
    const title = "Proposed on the page";
    await page.fill("#new-title", title);
    await page.fill("#new-body", "Signed in the member's wallet.");
    await page.click("#new-submit");
    const created = await page.waitForFunction((t) => {
      const h = [...document.querySelectorAll("[data-proposal] h2")].find((x) => x.textContent === t);
      return h && h.parentElement.dataset.proposal;
    }, title, { timeout: 20000 });
    const createdId = await created.jsonValue();
    const createdStatus = await page.textContent("#status");
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    process.stdout.write(JSON.stringify({ before, mine, live, status, myPower, outcome, reasons, createdId, createdStatus }) + "\n");
}
