// Loads the node's GraphiQL page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) with every request to another host refused, as on an operator network
// without internet access; for node/tests/vote_page.rs. GraphiQL must render, read the schema
// by introspection and run a query typed into its editor.
//
// Input on stdin: {"url"}. Prints one JSON line: {"refused": [urls of other hosts asked for],
// "result": the text of GraphiQL's result pane}.
const { chromium } = require("playwright-core");

let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => run(JSON.parse(input)).catch((e) => { console.error(e); process.exit(1); }));

async function run({ url }) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const refused = [];
    await page.route("**/*", (route) => {
      const asked = route.request().url();
      if (asked.startsWith(url)) return route.continue();
      refused.push(asked);
      return route.abort();
    });
    const schemaRead = page.waitForResponse(async (r) =>
      r.url() === `${url}/graphql` && r.request().method() === "POST" &&
      (r.request().postData() || "").includes("__schema") && r.status() === 200);
    await page.goto(`${url}/`);
    await page.waitForSelector(".graphiql-container", { timeout: 30000 });
    await schemaRead;
    // Replace the editor's text with a query and run it (Ctrl+Enter).
    const editor = page.locator(".graphiql-query-editor .CodeMirror").first();
    await editor.click();
    await page.evaluate(() => document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.setValue("{ chains { id } }"));
    await page.click(".graphiql-execute-button");
    await page.waitForFunction(() => {
      const r = document.querySelector(".result-window .CodeMirror");
      return r && r.CodeMirror.getValue().includes("chains");
    }, null, { timeout: 30000 });
    const result = await page.evaluate(() => document.querySelector(".result-window .CodeMirror").CodeMirror.getValue());
    console.log(JSON.stringify({ refused, result }));
  } finally {
    await browser.close();
  }
}
