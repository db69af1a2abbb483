#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A fake LLM provider for the gateway tests: Anthropic Messages (/v1/messages,
/v1/messages/count_tokens), OpenAI Chat Completions (/v1/chat/completions) and Responses
(/v1/responses), streaming (SSE, chunked, with small delays between events) and not, over TLS (--cert/--key) or plain
HTTP. It checks the credential it expects and records each request (one JSON line per
request: path, headers, body, client port) in --record.

Models steer it: "cut-halfway" closes the connection mid-stream, "error-500" answers with
an error in the provider's shape, "wait-go" holds the last events until the file --go
exists (at most 10 s), "big-N" answers N bytes of body (chunked), "bad-response" answers
a malformed head, "hang" answers nothing for 4 s, "tool-call" asks for a tool call
(tool_use / tool_calls / function_call), "custom-call" for a Chat custom tool's call,
"shell-call" for a Responses local_shell_call, "xai-search" (Responses) lists two calls of xAI's
server-side search tools as custom_tool_call items, "builtin-tools" (Responses) runs two file searches
and two code interpreter calls in one container before its answer, "search-N" (Anthropic) runs N web searches
by its web_search server tool (a server_tool_use and a web_search_tool_result block each,
usage.server_tool_use.web_search_requests 0 at message_start and N in the final usage),
"billed-N" (Chat Completions) says in its usage that it cost N thousandths of a USD
(OpenRouter's usage.cost). Usage is fixed: Anthropic input 25, output 7
(cache read 3); OpenAI prompt 20, completion 3 (cached 2, reasoning 1). Chat Completions
streams carry the usage chunk only when stream_options.include_usage is true, as OpenAI's.
A whole chat completion has "n" choices, completion 3 each. A Responses request with
"background" is answered "queued", without output or usage; GET /v1/responses/resp_...
answers the stored response (a tool call, output 3000).

A scripted agent session (tests/integration/test-agents.sh drives Claude Code with it): an
Anthropic request that offers a tool named "Bash" and whose first user message holds
commands as <cmd>...</cmd> gets, while fewer tool_result blocks than commands came back,
a tool_use of Bash with the next command; then a final text, "RESULT n (ok|error): ..."
for each tool_result in order. Any other request (a title, a side model call) gets the
usual "Hello!".

The same for OpenAI's Responses API (tests/integration/test-agents-openai.sh drives an
OpenAI Agents SDK app and Codex with it): a request that offers function tools and whose
first user message with any holds calls as <call>NAME ARGUMENTS-JSON</call> (NAME one of the offered
tools; without NAME, the first one) gets, while fewer function_call_output items than calls
came back, a function_call with the next call (call ids call_fake1, call_fake2... unique in
the fake's life); then a message "RESULT n: OUTPUT" for each output in order."""
import argparse, itertools, json, os, re, socket, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

A = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Without it a response's head and body (two writes) wait for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        pass

    def record(self, body):
        line = json.dumps({"method": self.command, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()],
                           "body": body.decode("utf-8", "replace"), "port": self.client_address[1]})
        with open(A.record, "a") as f:
            f.write(line + "\n")

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def start_stream(self, ctype="text/event-stream"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def do_GET(self):
        self.record(b"")
        if self.path.startswith("/v1/responses/resp_"):
            # A stored (background) response, fetched when it is done: all its output and usage.
            return self.send_json(200, responses_body("gpt-test", "completed"))
        self.send_json(200, {"ok": True})

    def do_DELETE(self):
        # The account's data (a file), which the gateway sends the key to only where a profile opens it.
        n = int(self.headers.get("Content-Length", "0"))
        self.record(self.rfile.read(n))
        self.send_json(200, {"id": self.path.rsplit("/", 1)[-1], "deleted": True})

    def do_HEAD(self):
        # Claude Code's connectivity check at startup.
        self.record(b"")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.record(body)
        anthropic = self.path.startswith("/v1/messages")
        if anthropic:
            ok = self.headers.get("x-api-key") == A.anthropic_key and "Authorization" not in self.headers
        else:
            ok = self.headers.get("Authorization") == "Bearer " + A.openai_key and "x-api-key" not in self.headers
        if not ok:
            if anthropic:
                return self.send_json(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return self.send_json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        model = str(req.get("model", ""))
        if model == "error-500":
            if anthropic:
                return self.send_json(500, {"type": "error", "error": {"type": "api_error", "message": "fake failure"}})
            return self.send_json(500, {"error": {"message": "fake failure", "type": "server_error", "code": None}})
        if model == "bad-response":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello")
            self.close_connection = True
            return
        if model == "hang":
            time.sleep(4)
            self.close_connection = True
            return
        if model.startswith("big-"):
            self.start_stream("application/octet-stream")
            left = int(model[4:])
            block = b"0123456789abcdef" * 4096
            while left > 0:
                self.chunk(block[:min(left, len(block))])
                left -= min(left, len(block))
            self.chunk(b"")
            return
        if self.path.endswith("/count_tokens"):
            return self.send_json(200, {"input_tokens": 12})
        # Perplexity's async API: an acknowledgment, the answer fetched later by GET.
        if self.path.startswith("/async/"):
            return self.send_json(200, {"id": "async_fake", "model": model, "status": "CREATED", "response": None})
        # OpenRouter's router models ("openrouter/auto") answer with the model they picked.
        if model.startswith("openrouter/"):
            model = "gpt-test"
        if anthropic:
            return self.anthropic(req, model)
        return self.openai(req, model)

    def wait_go(self, model):
        if model != "wait-go":
            return
        for _ in range(1000):
            if os.path.exists(A.go):
                return
            time.sleep(0.01)

    def events(self, events, model):
        self.start_stream()
        for i, ev in enumerate(events):
            if model == "cut-halfway" and i == len(events) // 2:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if i == len(events) - 2:
                self.wait_go(model)
            self.chunk(ev)
            time.sleep(0.01)
        self.chunk(b"")

    def anthropic(self, req, model):
        usage = {"input_tokens": 25, "output_tokens": 7, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0}
        searches = int(model[7:]) if re.fullmatch(r"search-[0-9]+", model) else None
        if searches is not None:
            usage["server_tool_use"] = {"web_search_requests": searches}
        tool = model == "tool-call"
        block = ({"type": "tool_use", "id": "toolu_fake", "name": "get_weather", "input": {"city": "Paris"}}
                 if tool else {"type": "text", "text": "Hello!"})
        # "deep-tool-N": a tool call whose input is nested N levels deep (as a model asked to
        # fill a deeply nested schema writes it).
        if re.fullmatch(r"deep-tool-[0-9]+", model):
            deep = {"city": "Paris"}
            for _ in range(int(model[10:])):
                deep = {"a": deep}
            tool, block = True, {"type": "tool_use", "id": "toolu_deep%d" % next(TOOL_IDS), "name": "get_weather",
                                 "input": deep}
        scripted = script_step(req)
        if scripted:
            block = scripted
            tool = block["type"] == "tool_use"
        stop = "tool_use" if tool else "end_turn"
        # As Anthropic's web_search server tool: a server_tool_use block and its result per
        # search before the answer, the count in the final usage only.
        searched = []
        for n in range(searches or 0):
            searched += [{"type": "server_tool_use", "id": "srvtoolu_%d" % n, "name": "web_search",
                          "input": {"query": "q%d" % n}},
                         {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_%d" % n,
                          "content": [{"type": "web_search_result", "title": "r", "url": "https://example.com/%d" % n,
                                       "encrypted_content": "e", "page_age": None}]}]
        if not req.get("stream"):
            return self.send_json(200, {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                                        "content": searched + [block], "stop_reason": stop, "usage": usage})
        def sse(name, obj):
            obj = dict(obj, type=name)
            return "event: %s\ndata: %s\n\n" % (name, json.dumps(obj))
        start = dict(usage, output_tokens=1)
        if searches is not None:
            start["server_tool_use"] = {"web_search_requests": 0}
        evs = [sse("message_start", {"message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                                                 "content": [], "stop_reason": None, "usage": start}})]
        for i, b in enumerate(searched):
            if b["type"] == "server_tool_use":
                evs += [sse("content_block_start", {"index": i, "content_block": dict(b, input={})}),
                        sse("content_block_delta", {"index": i, "delta": {"type": "input_json_delta",
                                                                          "partial_json": json.dumps(b["input"])}})]
            else:
                evs.append(sse("content_block_start", {"index": i, "content_block": b}))
            evs.append(sse("content_block_stop", {"index": i}))
        last = len(searched)
        if tool:
            evs.append(sse("content_block_start", {"index": last, "content_block": dict(block, input={})}))
            args = json.dumps(block["input"])
            for part in [args[:len(args) // 2], args[len(args) // 2:]]:
                evs.append(sse("content_block_delta", {"index": last, "delta": {"type": "input_json_delta", "partial_json": part}}))
        else:
            evs.append(sse("content_block_start", {"index": last, "content_block": {"type": "text", "text": ""}}))
            words = [block["text"]] if scripted else ["Hel", "lo", " the", "re", "!"]
            for word in words:
                evs.append(sse("content_block_delta", {"index": last, "delta": {"type": "text_delta", "text": word}}))
        evs += [sse("content_block_stop", {"index": last}),
                sse("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                       "usage": dict({"output_tokens": 7}, **({"server_tool_use": usage["server_tool_use"]}
                                                                              if searches is not None else {}))}),
                sse("message_stop", {})]
        self.events(evs, model)

    def openai(self, req, model):
        if self.path.startswith("/v1/responses"):
            return self.openai_responses(req, model)
        tool = model == "tool-call"
        usage = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23,
                 "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}
        call = {"id": "call_fake", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        if model == "custom-call":
            tool = True
            call = {"id": "call_custom", "type": "custom", "custom": {"name": "code_exec", "input": "print(1)"}}
        if re.fullmatch(r"billed-[0-9]+", model):
            usage["cost"] = int(model[7:]) / 1000
        n = req.get("n") if isinstance(req.get("n"), int) and req.get("n") > 1 else 1
        if not req.get("stream"):
            msg = {"role": "assistant", "content": None, "tool_calls": [call]} if tool else {"role": "assistant", "content": "Hello!"}
            # n choices: the completion tokens of all of them, as OpenAI's.
            usage = dict(usage, completion_tokens=3 * n, total_tokens=20 + 3 * n)
            return self.send_json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": model,
                                        "choices": [{"index": i, "message": msg, "finish_reason": "tool_calls" if tool else "stop"}
                                                    for i in range(n)],
                                        "usage": usage})
        def chunk(choices, **extra):
            return "data: %s\n\n" % json.dumps(dict({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                                                      "choices": choices}, **extra))
        if tool:
            evs = [chunk([{"index": 0, "delta": {"role": "assistant", "tool_calls": [dict(call, index=0)]}}]),
                   chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])]
        else:
            evs = [chunk([{"index": 0, "delta": {"content": w}}]) for w in ["Hel", "lo", "!"]]
            evs.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (req.get("stream_options") or {}).get("include_usage"):
            evs.append(chunk([], usage=usage))
        evs.append("data: [DONE]\n\n")
        self.events(evs, model)

    def openai_responses(self, req, model):
        tool = model == "tool-call"
        usage = {"input_tokens": 20, "output_tokens": 3, "total_tokens": 23,
                 "input_tokens_details": {"cached_tokens": 2}, "output_tokens_details": {"reasoning_tokens": 1}}
        item = ({"type": "function_call", "id": "fc_fake", "call_id": "call_fake", "name": "get_weather", "arguments": '{"city":"Paris"}'}
                if tool else {"type": "message", "id": "msg_fake", "role": "assistant",
                              "content": [{"type": "output_text", "text": "Hello!"}]})
        if model == "shell-call":
            item = {"type": "local_shell_call", "id": "lsh_fake", "call_id": "call_shell", "status": "completed",
                    "action": {"type": "exec", "command": ["id"], "env": {}}}
        # "builtin-tools": the provider's own tools ran first (two file searches, two code
        # interpreter calls in one container), then the answer.
        builtin = []
        if model == "builtin-tools":
            builtin = [{"type": "file_search_call", "id": "fs_%d" % n, "status": "completed", "queries": ["q"],
                        "results": None} for n in range(2)]
            builtin += [{"type": "code_interpreter_call", "id": "ci_%d" % n, "status": "completed",
                         "container_id": "cntr_fake", "code": "print(1)", "outputs": None} for n in range(2)]
        # "xai-search": xAI's server-side tools ran first, listed as custom_tool_call items (an
        # x_search's x_keyword_search, a web_search's browse_page), and its usage says so.
        if model == "xai-search":
            builtin = [{"type": "custom_tool_call", "id": "ctc_%d" % n, "call_id": "xs_call_%d" % n, "name": name,
                        "input": '{"query":"q"}', "status": "completed"}
                       for n, name in enumerate(["x_keyword_search", "browse_page"])]
            usage = dict(usage, server_side_tool_usage_details={"web_search_calls": 1, "x_search_calls": 1})
        scripted = responses_script_step(req)
        if scripted:
            item = scripted
            tool = item["type"] == "function_call"
        resp = {"id": "resp_fake", "object": "response", "model": model, "status": "completed", "output": builtin + [item],
                "usage": usage}
        if req.get("background"):
            # Queued: the model runs after the answer; GET /v1/responses/ID has its output.
            return self.send_json(200, dict(resp, status="queued", output=[], usage=None, background=True))
        if not req.get("stream"):
            return self.send_json(200, resp)
        def sse(name, obj):
            return "event: %s\ndata: %s\n\n" % (name, json.dumps(dict(obj, type=name)))
        evs = [sse("response.created", {"response": dict(resp, status="in_progress", output=[], usage=None)})]
        for n, b in enumerate(builtin):
            evs += [sse("response.output_item.added", {"output_index": n, "item": dict(b, status="in_progress")}),
                    sse("response.output_item.done", {"output_index": n, "item": b})]
        evs.append(sse("response.output_item.added", {"output_index": len(builtin), "item": item}))
        if tool:
            evs += [sse("response.function_call_arguments.delta", {"output_index": 0, "item_id": item["id"], "delta": item["arguments"]}),
                    sse("response.function_call_arguments.done", {"output_index": 0, "item_id": item["id"], "arguments": item["arguments"]})]
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            words = [text] if scripted else ["Hel", "lo!"]
            evs += [sse("response.output_text.delta", {"output_index": len(builtin), "content_index": 0, "item_id": item["id"], "delta": w})
                    for w in words]
        evs += [sse("response.output_item.done", {"output_index": len(builtin), "item": item}),
                sse("response.completed", {"response": resp})]
        self.events(evs, model)


def responses_body(model, status):
    """A whole Responses object with a tool call, as a stored response is fetched."""
    item = {"type": "function_call", "id": "fc_fake", "call_id": "call_fake", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    usage = {"input_tokens": 20, "output_tokens": 3000, "total_tokens": 3020,
             "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    return {"id": "resp_fake", "object": "response", "model": model, "status": status, "background": True,
            "output": [item], "usage": usage}


TOOL_IDS = itertools.count(1)


def texts(content):
    """The text of a message's content: a string, or its text blocks."""
    if isinstance(content, str):
        return content
    out = []
    for b in content if isinstance(content, list) else []:
        if isinstance(b, dict) and b.get("type") == "text":
            out.append(str(b.get("text", "")))
    return "\n".join(out)


def script_step(req):
    """The scripted session's next block for this request, or None when it is not one."""
    tools = req.get("tools") or []
    if not any(isinstance(t, dict) and t.get("name") == "Bash" for t in tools):
        return None
    msgs = [m for m in req.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in msgs if m.get("role") == "user"]
    if not users:
        return None
    cmds = re.findall(r"<cmd>(.*?)</cmd>", texts(users[0].get("content")), re.S)
    if not cmds:
        return None
    results = []
    for m in users:
        for b in m.get("content") if isinstance(m.get("content"), list) else []:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                c = b.get("content")
                results.append((bool(b.get("is_error")), c if isinstance(c, str) else texts(c)))
    if len(results) < len(cmds):
        return {"type": "tool_use", "id": "toolu_fake%d" % next(TOOL_IDS), "name": "Bash",
                "input": {"command": cmds[len(results)], "description": "a scripted command"}}
    return {"type": "text", "text": "\n".join("RESULT %d (%s): %s" % (i + 1, "error" if e else "ok", t.strip())
                                               for i, (e, t) in enumerate(results))}


def item_text(content):
    """The text of a Responses input item's content: a string, or its input_text/output_text parts."""
    if isinstance(content, str):
        return content
    out = []
    for b in content if isinstance(content, list) else []:
        if isinstance(b, dict) and b.get("type") in ("input_text", "output_text", "text"):
            out.append(str(b.get("text", "")))
    return "\n".join(out)


def responses_script_step(req):
    """The scripted Responses session's next output item for this request, or None."""
    tools = [t for t in req.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    names = [str(t.get("name")) for t in tools]
    if not names:
        return None
    items = req.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else [i for i in items or [] if isinstance(i, dict)]
    # The first user message with calls (Codex sends its environment as user messages first).
    calls = next((c for c in (re.findall(r"<call>(.*?)</call>", item_text(i.get("content")), re.S)
                              for i in items if i.get("role") == "user") if c), None)
    if not calls:
        return None
    outputs = [item_text(i.get("output")) for i in items if i.get("type") == "function_call_output"]
    if len(outputs) < len(calls):
        name, _, args = calls[len(outputs)].strip().partition(" ")
        if name not in names:
            name, args = names[0], calls[len(outputs)]
        n = next(TOOL_IDS)
        return {"type": "function_call", "id": "fc_fake%d" % n, "call_id": "call_fake%d" % n, "name": name,
                "arguments": args.strip() or "{}", "status": "completed"}
    return {"type": "message", "id": "msg_fake", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "annotations": [], "text": "\n".join(
                "RESULT %d: %s" % (i + 1, o.strip()) for i, o in enumerate(outputs))}]}


def main():
    global A
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--record", required=True)
    p.add_argument("--go", default="/nonexistent")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--anthropic-key", default="sk-ant-real")
    p.add_argument("--openai-key", default="sk-openai-real")
    A = p.parse_args()
    srv = ThreadingHTTPServer((A.bind, 0), Handler)
    srv.daemon_threads = True
    if A.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(A.cert, A.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = A.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, A.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
