#include "rvenc/proxy/openai.hpp"

#include <algorithm>
#include <cctype>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/protocol/sse.hpp"

namespace rvenc::proxy {

namespace json = boost::json;

namespace {

// The HTTP status the proxy answers a forwarded or local error with.
unsigned proxy_status(const Error& error) {
  switch (error.code) {
    // Left after the SDK's own refetch of the attestation: the gateway/enclave pair is broken.
    case Errc::unknown_key_id:
    case Errc::internal_error:
      return 502;
    default:
      break;
  }
  const int status = error.http_status != 0 ? error.http_status : http_status(error.code);
  if (status >= 400 && status < 500) return static_cast<unsigned>(status);
  if (status == 503 || status == 504) return static_cast<unsigned>(status);
  return 502;
}

}  // namespace

Result<IncomingChat> parse_incoming_chat(std::string_view body) {
  return parse_incoming_request(body, protocol::Endpoint::chat_completions);
}

Result<IncomingChat> parse_incoming_request(std::string_view body, protocol::Endpoint endpoint) {
  json::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec || !doc.is_object()) return fail(Errc::invalid_request, "the request body is not a JSON object");
  const auto& obj = doc.get_object();
  IncomingChat out;
  out.body = obj;
  const auto* model = obj.if_contains("model");
  if (model == nullptr || !model->is_string() || model->get_string().empty())
    return fail(Errc::invalid_request, "`model` is required and must be a non-empty string");
  out.model = std::string(model->get_string());
  if (endpoint == protocol::Endpoint::chat_completions) {
    const auto* messages = obj.if_contains("messages");
    if (messages == nullptr || !messages->is_array())
      return fail(Errc::invalid_request, "`messages` is required and must be an array");
  } else if (endpoint == protocol::Endpoint::completions || endpoint == protocol::Endpoint::embeddings) {
    const std::string_view required = endpoint == protocol::Endpoint::completions ? "prompt" : "input";
    if (const auto* value = obj.if_contains(required); value == nullptr || value->is_null())
      return fail(Errc::invalid_request, "`" + std::string(required) + "` is required");
  }
  if (const auto* stream = obj.if_contains("stream"); stream != nullptr && !stream->is_null()) {
    if (!stream->is_bool()) return fail(Errc::invalid_request, "`stream` must be a boolean");
    out.stream = stream->get_bool();
  }
  if (const auto* options = obj.if_contains("stream_options"); options != nullptr && !options->is_null()) {
    if (!options->is_object()) return fail(Errc::invalid_request, "`stream_options` must be an object");
    if (const auto* usage = options->get_object().if_contains("include_usage"); usage != nullptr && !usage->is_null()) {
      if (!usage->is_bool()) return fail(Errc::invalid_request, "`stream_options.include_usage` must be a boolean");
      out.include_usage = usage->get_bool();
    }
  }
  if (endpoint == protocol::Endpoint::embeddings && out.stream)
    return fail(Errc::invalid_request, "`stream` is not supported for embeddings");
  return out;
}

ApiError api_error(const Error& error) {
  ApiError out;
  out.status = proxy_status(error);
  out.type = std::string(error_type_for_status(static_cast<int>(out.status)));
  out.code = std::string(code_name(error.code));
  out.message = error.message.empty() ? out.code : error.message;
  return out;
}

ApiError model_not_found(std::string_view model) {
  ApiError out;
  out.status = 404;
  out.type = "invalid_request_error";
  out.code = "model_not_found";
  const bool cut = model.size() > kMaxEchoedModelChars;
  out.message = "The model `" + std::string(model.substr(0, kMaxEchoedModelChars)) + (cut ? "…" : "") +
                "` does not exist or is not served by this gateway";
  return out;
}

std::string error_json(const ApiError& error) { return openai_error_json(error.message, error.type, error.code); }

std::string stream_error_event(const ApiError& error) { return protocol::format_data_only(error_json(error)); }

Result<std::string> StreamShaper::chunk(std::string_view chunk_json) {
  json::error_code ec;
  json::value doc = json::parse(chunk_json, ec);
  if (ec || !doc.is_object()) return fail(Errc::invalid_request, "a decrypted chunk is not a JSON object");
  return chunk(std::move(doc.get_object()));
}

std::string StreamShaper::chunk(json::object obj) {
  for (std::string_view key : {"id", "created", "model", "system_fingerprint"}) {
    if (const auto* v = obj.if_contains(key)) last_head_[key] = *v;
  }
  if (const auto* usage = obj.if_contains("usage"); usage != nullptr && !usage->is_null()) {
    if (auto parsed = protocol::parse_usage(*usage)) usage_ = parsed;
  }
  // OpenAI sends usage only when asked for, and then only in the final empty-choices chunk.
  if (include_usage_) {
    obj["usage"] = nullptr;
  } else {
    obj.erase("usage");
  }
  return protocol::format_data_only(json::serialize(obj));
}

std::string StreamShaper::finish() const {
  std::string out;
  if (include_usage_ && usage_) {
    json::object chunk = last_head_;
    chunk["object"] = object_;
    chunk["choices"] = json::array();
    chunk["usage"] = {{"prompt_tokens", usage_->prompt_tokens},
                      {"completion_tokens", usage_->completion_tokens},
                      {"total_tokens", usage_->total_tokens()}};
    out = protocol::format_data_only(json::serialize(chunk));
  }
  out += kSseDone;
  return out;
}

std::string completion_json(json::object completion, std::string_view object) {
  completion["object"] = object;
  const json::value* reported = completion.if_contains("usage");
  const protocol::Usage usage =
      (reported != nullptr ? protocol::parse_usage(*reported) : std::nullopt).value_or(protocol::Usage{});
  completion["usage"] = {{"prompt_tokens", usage.prompt_tokens},
                         {"completion_tokens", usage.completion_tokens},
                         {"total_tokens", usage.total_tokens()}};
  return json::serialize(completion);
}

}  // namespace rvenc::proxy
