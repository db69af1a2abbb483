// SPDX-License-Identifier: Apache-2.0
// An OpenAI Agents SDK app (@openai/agents) whose function tool asks agentjail's broker
// before it runs and reports how it ended: the recipe of docs/agents.md, run in a jail by
// tests/integration/test-agents-openai.sh.
//   node openai-agent.js [--stream] [--model M] PROMPT
// The SDK reads OPENAI_BASE_URL and OPENAI_API_KEY, which `agentjail run --llm openai` sets
// to the run's LLM gateway and a placeholder key. Prints "FINAL: <the agent's answer>".
"use strict";
const { execFile } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { Agent, run, tool } = require("@openai/agents");
const { z } = require("zod");

// `agentjail meter ARGS... --json`: the broker's reply and the exit status (0 allowed or
// recorded, 1 denied, 3 a cap crossed: the run is being frozen, 2 an error).
function meter(args) {
  return new Promise((resolve) => {
    execFile("agentjail", ["meter", ...args, "--json"], { timeout: 20 * 60 * 1000 }, (err, stdout, stderr) => {
      let reply = {};
      try {
        reply = JSON.parse(stdout);
      } catch {}
      resolve({ status: err ? (typeof err.code === "number" ? err.code : 2) : 0, reply, stderr: String(stderr).trim() });
    });
  });
}

// A function tool whose execute() runs only when the broker allows the call (name NAME,
// arguments the model's, call id the model's call_id). A denial is the tool's output, so
// the model learns why; a breach or an unreachable broker ends the run (fail closed).
function brokeredTool(def) {
  return tool({
    ...def,
    async execute(input, context, details) {
      const callId = details && details.toolCall && details.toolCall.callId;
      const ask = await meter(["tool", def.name, "--args", JSON.stringify(input), ...(callId ? ["--id", callId] : [])]);
      if (ask.status === 1)
        return `agentjail denied the tool call ${def.name}: ${ask.reply.reason || ask.stderr}`;
      if (ask.status !== 0)
        throw new Error(`agentjail: ${def.name} not run: ${ask.reply.reason || ask.stderr || "no verdict"}`);
      const id = ask.reply["gen_ai.tool.call.id"] || callId;
      try {
        const out = await def.execute(input, context, details);
        await meter(["result", id, "--status", "ok"]);
        return out;
      } catch (e) {
        await meter(["result", id, "--status", "error"]);
        return `error: ${e.message}`;
      }
    },
  });
}

const saveNote = brokeredTool({
  name: "save_note",
  description: "Save a note to a file in the current directory",
  parameters: z.object({ file: z.string(), text: z.string() }),
  async execute({ file, text }) {
    fs.writeFileSync(path.basename(file), text + "\n");
    return `saved ${text.length} characters to ${path.basename(file)}`;
  },
});

async function main() {
  const args = process.argv.slice(2);
  const stream = args[0] === "--stream" && Boolean(args.shift());
  const model = args[0] === "--model" ? (args.shift(), args.shift()) : "gpt-test";
  const agent = new Agent({ name: "Notes", instructions: "Save the notes you are given.", model, tools: [saveNote] });
  const result = await run(agent, args.join(" "), { stream });
  if (stream) {
    for await (const _ of result) {
    }
    await result.completed;
  }
  console.log("FINAL: " + result.finalOutput);
}

main().catch((e) => {
  console.error("agent failed: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
