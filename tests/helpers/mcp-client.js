// SPDX-License-Identifier: Apache-2.0
// An MCP client on the official SDK (@modelcontextprotocol/sdk, from the npm cache the
// test fills) for tests/integration/test-mcp.sh. It starts the server command given after
// "--" over stdio and prints one line per step, KEY=VALUE:
//   node mcp-client.js MODULES WORKDIR SCENARIO -- CMD [ARG...]
// SCENARIO "full": list, read, a denied write, a held mkdir with a call made while it is
// held; "list-read": list and read only.
const path = require("path");
const { createRequire } = require("module");

const [modules, workdir, scenario, sep, command, ...args] = process.argv.slice(2);
if (sep !== "--" || !command) {
  console.error("usage: mcp-client.js MODULES WORKDIR SCENARIO -- CMD [ARG...]");
  process.exit(2);
}
const sdk = createRequire(path.join(modules, "node_modules", "noop.js"));
const { Client } = sdk("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = sdk("@modelcontextprotocol/sdk/client/stdio.js");

const text = (r) => (r.content || []).map((c) => c.text || "").join("").replace(/\n/g, " ");

(async () => {
  // The SDK passes only a few variables by default: agentjail mcp needs $AGENTJAIL_BROKER.
  const transport = new StdioClientTransport({ command, args, env: { ...process.env }, stderr: "inherit" });
  const client = new Client({ name: "agentjail-test", version: "1.0.0" });
  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log("tools=" + tools.map((t) => t.name).sort().join(","));
  const read = await client.callTool({ name: "read_text_file", arguments: { path: path.join(workdir, "hello.txt") } });
  console.log("read=" + text(read) + " isError=" + Boolean(read.isError));
  if (scenario === "full") {
    try {
      const w = await client.callTool({ name: "write_file", arguments: { path: path.join(workdir, "evil.txt"), content: "x" } });
      console.log("write=allowed " + text(w));
    } catch (e) {
      console.log("write-error=" + e.message + " code=" + e.code);
    }
    // Held for approval: the call is left waiting while another goes through.
    const held = client.callTool({ name: "create_directory", arguments: { path: path.join(workdir, "made") } },
                                 undefined, { timeout: 120000 });
    const during = await client.callTool({ name: "list_allowed_directories", arguments: {} });
    console.log("during-hold=" + text(during));
    const mk = await held;
    console.log("mkdir=" + text(mk) + " isError=" + Boolean(mk.isError));
  }
  await client.close();
  console.log("closed");
})().catch((e) => {
  console.log("client-error=" + e.message);
  process.exit(1);
});
