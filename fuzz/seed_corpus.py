#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the shared test vectors plus a few
hand-written inputs. Run once when the vectors change: python3 fuzz/seed_corpus.py [VECTORS_DIR]"""
import json
import pathlib
import sys

vectors = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/vectors")
out = pathlib.Path(__file__).resolve().parent / "corpus"


def write(target, name, text):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(text.encode() if isinstance(text, str) else text)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


for version in ("v1", "v2", "v3"):
    cases = json.loads((vectors / f"{version}.json").read_text())["cases"]
    for i, case in enumerate(cases):
        write("envelope", f"{version}_case{i}.json", compact(case["body"]))
        write("sse", f"{version}_case{i}.sse", case["sse"])
        write("chat_request", f"{version}_case{i}.json", case["request"])
        chunks = [e["plaintext"] for e in case["events"] if e["kind"] == "data"]
        write("assembler", f"{version}_case{i}.jsonl", "\n".join(chunks) + "\n")
    # The opener fuzz target holds the keys of case 0 only: its stream decrypts there.
    write("response_opener", f"{version}_case0.sse", cases[0]["sse"])
    write("response_opener", f"{version}_case0_truncated.sse", cases[0]["sse"][: len(cases[0]["sse"]) // 2])
    write("hex", f"{version}_nonce.txt", cases[0]["nonce"])
    write("hex", f"{version}_keyid.txt", cases[0]["keyId"])
    for n, negative in enumerate(cases[0].get("negative", [])):
        write("response_opener", f"{version}_case0_negative{n}.sse", negative["sse"])

write("hex", "upper.txt", "DEADBEEF0a1B")
write("hex", "odd.txt", "abc")
write("hex", "not_hex.txt", "zz11")
write("hex", "empty.txt", "")

body = json.loads(compact(json.loads((vectors / "v2.json").read_text())["cases"][0]["body"]))
write("envelope", "v3.json", compact({**body, "version": 3}))
write("envelope", "v2_missing_nonce.json", compact({k: v for k, v in body.items() if k != "nonce"}))
write("envelope", "v2_extra_field.json", compact({**body, "extra": 1}))
write("envelope", "v2_timestamp_string.json", compact({**body, "timestamp": str(body["timestamp"])}))
write("envelope", "not_json.txt", "{\"version\":2,")

write("sse", "mixed_line_ends.sse",
      ": keep-alive\r\nevent: data\r\ndata: first\r\ndata:second\rid: 7\nretry: 100\n\n"
      "data: [DONE]\n\nevent:\ndata\n\nunknown: field\n\n")
write("sse", "openai_data_only.sse",
      'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n')
write("sse", "unterminated.sse", "event: data\ndata: abc")

write("response_opener", "gateway_error.sse",
      'event: error\ndata: {"error":{"message":"enclave connection lost","type":"upstream_error",'
      '"code":"upstream_error"}}\n\n')
write("response_opener", "bad_hex.sse", "event: data\ndata: zz\n\nevent: done\ndata: [DONE]\n\n")

tool_chunks = [
    {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
         {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
         "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": "\"Paris\"}"}},
        {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
     "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}},
]
write("assembler", "tool_calls.jsonl", "\n".join(compact(c) for c in tool_chunks) + "\n")
write("assembler", "reasoning_two_choices.jsonl", "\n".join(compact(c) for c in [
    {"id": "c2", "model": "m", "system_fingerprint": "fp", "choices": [
        {"index": 0, "delta": {"reasoning": "think"}}, {"index": 1, "delta": {"content": "b"}}]},
    {"choices": [{"index": 1, "delta": {"content": "c"}, "finish_reason": "length"}], "usage": None},
    {"choices": None, "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
]) + "\n")

write("chat_request", "tools.json", compact({
    "model": "m", "stream": False, "max_completion_tokens": 32, "temperature": 0.5, "top_p": 1, "n": 1,
    "stop": ["\n\n", "END"],
    "messages": [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
}))
write("chat_request", "nulls.json", compact({
    "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": None, "max_tokens": None,
    "temperature": None, "stop": "x"}))
write("chat_request", "wrong_types.json", compact({"model": 1, "messages": {}, "stream": "yes"}))

# Attestation documents (PROTOCOL.md section 1) around the attestation vector's key.
import base64  # noqa: E402

att = json.loads((vectors / "attestation.json").read_text())["cases"][0]
v1_case0 = json.loads((vectors / "v1.json").read_text())["cases"][0]
doc = {"keyId": v1_case0["keyId"] if v1_case0["publicKey"] == att["publicKey"] else "00" * 8,
       "kem": "X-Wing", "publicKey": att["publicKey"], "notAfter": 1790000000, "provider": "simulated",
       "reportData": att["reportData"], "evidence": base64.b64encode(bytes(range(64))).decode(),
       "measurement": "ab" * 32}
write("attestation", "simulated.json", compact(doc))
write("attestation", "sev_snp.json", compact({**doc, "provider": "sev-snp",
                                               "evidence": base64.b64encode(b"\x02" * 1184).decode(),
                                               "measurement": "cd" * 48}))
write("attestation", "bad_base64.json", compact({**doc, "evidence": "!!!="}))
write("attestation", "missing_key.json", compact({k: v for k, v in doc.items() if k != "publicKey"}))


def frame(kind, stream, payload=b""):
    return len(payload).to_bytes(4, "big") + stream.to_bytes(4, "big") + bytes([kind]) + payload


write("mux_frame", "request.bin", frame(1, 1, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"))
write("mux_frame", "stream.bin", frame(2, 1, b"HTTP/1.1 200 OK\r\n\r\n") + frame(3, 1, b"data: x\n\n") + frame(4, 1))
write("mux_frame", "window_reset.bin", frame(6, 3, (131072).to_bytes(4, "big")) + frame(5, 3, b"cancelled"))
write("mux_frame", "cut.bin", frame(3, 5, b"0123456789")[:12])
