// A non-streaming answer assembled from the stream's chunks (PROTOCOL.md section 3), as the C++
// SDK's CompletionAssembler: content and reasoning concatenated, tool_calls merged by index, the
// last finish_reason and usage kept.
import type { ChatCompletion, ChatCompletionChunk } from './types.js';

const MAX_CHOICES = 128;
const MAX_TOOL_CALLS = 128;

interface ToolCall { id: string; type: string; name: string; arguments: string }
interface Choice {
  role: string; content: string; hasContent: boolean; reasoning: string; hasReasoning: boolean;
  finishReason: unknown; toolCalls: Map<number, ToolCall>;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const int = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);

export class CompletionAssembler {
  private id = '';
  private model = '';
  private fingerprint = '';
  private created = 0;
  private usage: unknown = null;
  private readonly choices = new Map<number, Choice>();

  add(chunk: ChatCompletionChunk | Record<string, unknown>): void {
    const c = chunk as Record<string, unknown>;
    if (!this.id) this.id = str(c.id);
    if (!this.model) this.model = str(c.model);
    if (str(c.system_fingerprint)) this.fingerprint = str(c.system_fingerprint);
    if (this.created === 0 && int(c.created) !== null) this.created = int(c.created)!;
    if (c.usage && typeof c.usage === 'object') this.usage = c.usage;
    if (!Array.isArray(c.choices)) return;
    for (const raw of c.choices) {
      if (!raw || typeof raw !== 'object') continue;
      const o = raw as Record<string, unknown>;
      const index = int(o.index) ?? 0;
      if (index < 0 || index >= MAX_CHOICES) continue;
      let choice = this.choices.get(index);
      if (!choice) {
        choice = { role: 'assistant', content: '', hasContent: false, reasoning: '', hasReasoning: false, finishReason: null, toolCalls: new Map() };
        this.choices.set(index, choice);
      }
      if (o.finish_reason !== undefined && o.finish_reason !== null) choice.finishReason = o.finish_reason;
      if (!o.delta || typeof o.delta !== 'object') continue;
      this.addDelta(choice, o.delta as Record<string, unknown>);
    }
  }

  private addDelta(choice: Choice, delta: Record<string, unknown>): void {
    if (str(delta.role)) choice.role = str(delta.role);
    if (typeof delta.content === 'string') {
      choice.content += delta.content;
      choice.hasContent = true;
    }
    const reasoning = typeof delta.reasoning_content === 'string' ? delta.reasoning_content
      : typeof delta.reasoning === 'string' ? delta.reasoning : null;
    if (reasoning !== null) {
      choice.reasoning += reasoning;
      choice.hasReasoning = true;
    }
    if (!Array.isArray(delta.tool_calls)) return;
    let position = 0;
    for (const t of delta.tool_calls) {
      if (!t || typeof t !== 'object') continue;
      const call = t as Record<string, unknown>;
      const callIndex = int(call.index) ?? position;
      position += 1;
      if (callIndex < 0 || callIndex >= MAX_TOOL_CALLS) continue;
      let merged = choice.toolCalls.get(callIndex);
      if (!merged) {
        merged = { id: '', type: 'function', name: '', arguments: '' };
        choice.toolCalls.set(callIndex, merged);
      }
      if (str(call.id) && !merged.id) merged.id = str(call.id);
      if (str(call.type)) merged.type = str(call.type);
      const fn = call.function as Record<string, unknown> | undefined;
      if (fn && typeof fn === 'object') {
        if (str(fn.name) && !merged.name) merged.name = str(fn.name);
        if (typeof fn.arguments === 'string') merged.arguments += fn.arguments;
      }
    }
  }

  completion(): ChatCompletion {
    const choices = [...this.choices.entries()].sort(([a], [b]) => a - b).map(([index, c]) => {
      const message: Record<string, unknown> = { role: c.role, content: c.hasContent ? c.content : null };
      if (c.hasReasoning) message.reasoning_content = c.reasoning;
      if (c.toolCalls.size > 0) {
        message.tool_calls = [...c.toolCalls.entries()].sort(([a], [b]) => a - b).map(([i, t]) => (
          { index: i, id: t.id, type: t.type, function: { name: t.name, arguments: t.arguments } }));
      }
      return { index, message, finish_reason: c.finishReason, logprobs: null };
    });
    const out: Record<string, unknown> = { id: this.id, object: 'chat.completion', created: this.created, model: this.model };
    if (this.fingerprint) out.system_fingerprint = this.fingerprint;
    out.choices = choices;
    out.usage = this.usage;
    return out as unknown as ChatCompletion;
  }
}
